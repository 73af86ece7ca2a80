using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// Ring all-reduce over `size` ranks: N-1 rounds of reduce-scatter (each rank adds the segment
/// its predecessor sends and passes it on), then N-1 rounds of all-gather (the completed segments
/// travel once around the ring). Each rank sends 2(N-1)/N of the vector in total.
///
/// Pipelined by parts: every segment is cut into the same number of parts (each within the
/// protocol's payload limit), and part p of a segment is passed on as soon as part p has arrived
/// and been added, without waiting for the rest of the segment. The segment a rank sends in round
/// r + 1 is the one it received in round r, so each part travels the ring on its own and the
/// rounds overlap. Each (segment, part) is one causal chain of messages around the ring: a rank
/// sees its all-gather copy only after the chain has passed it once with the reduce-scatter
/// addition, so the result is exact whatever order the transport delivers different chunks in.
///
/// Overlapped with the backward pass: between Begin and Ready(0) only the parts whose elements
/// hold this rank's whole contribution are sent (round 0 of its own segment as they become ready,
/// and any part it has to pass on); a chunk that arrives earlier is added at once and passed on
/// when its part becomes ready. Additions commute, so the total is the same exact integers. A final
/// value can only come back after this rank has passed the part on, hence after it was ready.
///
/// It sends through an <see cref="IChunkSink"/> (exact messages, or the data plane's pooled frames)
/// and reads a received payload only during Handle, so it never knows who owns a buffer.
public sealed class RingAllReduce(int generation, int rank, int size, IChunkSink next) : IAllReduce
{
    /// Chunks to the next rank as exact messages.
    public RingAllReduce(int generation, int rank, int size, Action<GradientChunk> sendToNext)
        : this(generation, rank, size, new MessageSink(sendToNext)) { }

    long[] _sums = [];
    readonly int _generation = generation;
    long _step;
    int _parts;
    bool[] _applied = [];   // [round * _parts + part]
    int _appliedCount;
    int _readyFrom;         // _sums[_readyFrom..] hold this rank's whole contribution
    bool[] _sentFirst = []; // round 0, by part
    readonly List<(int Round, int Part)> _held = [];   // parts to pass on once they are ready

    public long SentBytes { get; private set; }

    int Rounds => 2 * (size - 1);

    public void Begin(long step, long[] sums)
    {
        _sums = sums;
        _step = step;
        _readyFrom = sums.Length;
        _held.Clear();
        SentBytes = 0;
        if (size == 1) return;
        int longest = (int)((sums.LongLength + size - 1) / size);
        _parts = GradientCodec.Parts(longest);
        _applied = new bool[Rounds * _parts];
        _appliedCount = 0;
        _sentFirst = new bool[_parts];
    }

    public bool Ready(int from)
    {
        if (from < _readyFrom)
        {
            _readyFrom = Math.Max(0, from);
            if (size > 1)
            {
                for (int p = 0; p < _parts; p++)
                    if (!_sentFirst[p] && IsReady(SendSegment(0), p)) { _sentFirst[p] = true; Send(0, p); }
                for (int i = 0; i < _held.Count; i++)
                    if (IsReady(SendSegment(_held[i].Round), _held[i].Part)) { Send(_held[i].Round, _held[i].Part); _held.RemoveAt(i--); }
            }
        }
        return size == 1 ? _readyFrom == 0 : _appliedCount == _applied.Length;
    }

    bool IsReady(int segment, int part)
    {
        var (start, length) = Segment(segment);
        return Payload.Part(start, length, part, _parts).Start >= _readyFrom;
    }

    public bool Handle(ChunkHeader chunk, ReadOnlySpan<byte> payload)
    {
        if (chunk.Generation != _generation || chunk.Step != _step)
            throw new InvalidChunkException($"chunk of generation {chunk.Generation} step {chunk.Step}, reducing generation {_generation} step {_step}");
        if ((uint)chunk.Round >= (uint)Rounds) throw new InvalidChunkException($"chunk for round {chunk.Round} of a ring with {Rounds} rounds");
        if (chunk.Segment != ReceiveSegment(chunk.Round))
            throw new InvalidChunkException($"chunk of segment {chunk.Segment} in round {chunk.Round}, expecting segment {ReceiveSegment(chunk.Round)}");
        if (chunk.Parts != _parts || (uint)chunk.Part >= (uint)_parts)
            throw new InvalidChunkException($"chunk part {chunk.Part} of {chunk.Parts}, expecting parts of {_parts}");
        if (_applied[chunk.Round * _parts + chunk.Part]) throw new InvalidChunkException($"duplicate chunk part {chunk.Part} of round {chunk.Round}");
        Apply(chunk, payload);
        return _appliedCount == _applied.Length;
    }

    int Mod(int x) => ((x % size) + size) % size;
    bool Gathering(int round) => round >= size - 1;
    int SendSegment(int round) => Gathering(round) ? Mod(rank + 1 - (round - size + 1)) : Mod(rank - round);
    int ReceiveSegment(int round) => Gathering(round) ? Mod(rank - (round - size + 1)) : Mod(rank - round - 1);
    (int Start, int Length) Segment(int k) => ((int)((long)_sums.Length * k / size), (int)((long)_sums.Length * (k + 1) / size) - (int)((long)_sums.Length * k / size));

    void Send(int round, int part)
    {
        int segment = SendSegment(round);
        var (start, length) = Segment(segment);
        var (s, n) = Payload.Part(start, length, part, _parts);
        SentBytes += next.Send(new ChunkHeader(_generation, _step, round, segment, part, _parts), _sums.AsSpan(s, n));
    }

    void Apply(ChunkHeader c, ReadOnlySpan<byte> payload)
    {
        var (start, length) = Segment(c.Segment);
        var (s, n) = Payload.Part(start, length, c.Part, _parts);
        ChunkPayload.Apply(c, payload, _sums.AsSpan(s, n), add: !Gathering(c.Round));
        _applied[c.Round * _parts + c.Part] = true;
        _appliedCount++;
        // What arrived in round r is what this rank passes on in round r + 1 (SendSegment(r + 1) == ReceiveSegment(r)),
        // once this rank's own contribution to it is in.
        if (c.Round + 1 < Rounds)
        {
            if (IsReady(c.Segment, c.Part)) Send(c.Round + 1, c.Part);
            else _held.Add((c.Round + 1, c.Part));
        }
    }
}
