using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// Ring all-reduce over `size` ranks: N-1 rounds of reduce-scatter (each rank adds the segment
/// its predecessor sends and passes its own on), then N-1 rounds of all-gather (the completed
/// segments travel once around the ring). Each rank sends 2(N-1)/N of the vector in total.
/// Segments are cut into parts no larger than the protocol's payload limit.
public sealed class RingAllReduce(int rank, int size, Action<GradientChunk> sendToNext) : IAllReduce
{
    long[] _sums = [];
    int _generation;
    long _step;
    int _round;
    bool[] _received = [];
    int _receivedCount;
    readonly Queue<GradientChunk> _early = new();

    int Rounds => 2 * (size - 1);

    public bool Start(int generation, long step, long[] sums)
    {
        _sums = sums;
        _generation = generation;
        _step = step;
        _round = 0;
        _early.Clear();
        if (size == 1) return true;
        BeginRound();
        return false;
    }

    public bool Handle(GradientChunk chunk)
    {
        if (chunk.Generation != _generation || chunk.Step != _step)
            throw new InvalidChunkException($"chunk of generation {chunk.Generation} step {chunk.Step}, reducing generation {_generation} step {_step}");
        if (_round >= Rounds) throw new InvalidChunkException($"chunk for round {chunk.Round} after the all-reduce completed");
        if (chunk.Round > _round) { _early.Enqueue(chunk); return false; }
        Apply(chunk);
        while (_receivedCount == _received.Length)
        {
            _round++;
            if (_round == Rounds) return true;
            BeginRound();
            int pending = _early.Count;
            for (int i = 0; i < pending; i++)
            {
                var c = _early.Dequeue();
                if (c.Round == _round) Apply(c); else _early.Enqueue(c);
            }
        }
        return false;
    }

    int Mod(int x) => ((x % size) + size) % size;
    bool Gathering => _round >= size - 1;
    int SendSegment => Gathering ? Mod(rank + 1 - (_round - size + 1)) : Mod(rank - _round);
    int ReceiveSegment => Gathering ? Mod(rank - (_round - size + 1)) : Mod(rank - _round - 1);
    (int Start, int Length) Segment(int k) => ((int)((long)_sums.Length * k / size), (int)((long)_sums.Length * (k + 1) / size) - (int)((long)_sums.Length * k / size));

    void BeginRound()
    {
        var (start, length) = Segment(SendSegment);
        int parts = Payload.Parts(length, 8);
        for (int p = 0; p < parts; p++)
        {
            var (s, n) = Payload.Part(start, length, p, parts);
            sendToNext(new GradientChunk(_generation, _step, _round, SendSegment, p, parts, Payload.FromLongs(_sums.AsSpan(s, n))));
        }
        var (_, receiveLength) = Segment(ReceiveSegment);
        _received = new bool[Payload.Parts(receiveLength, 8)];
        _receivedCount = 0;
    }

    void Apply(GradientChunk c)
    {
        if (c.Round != _round) throw new InvalidChunkException($"chunk for round {c.Round}, expecting round {_round}");
        if (c.Segment != ReceiveSegment) throw new InvalidChunkException($"chunk of segment {c.Segment} in round {c.Round}, expecting segment {ReceiveSegment}");
        if (c.Parts != _received.Length || (uint)c.Part >= (uint)c.Parts)
            throw new InvalidChunkException($"chunk part {c.Part} of {c.Parts}, expecting parts of {_received.Length}");
        if (_received[c.Part]) throw new InvalidChunkException($"duplicate chunk part {c.Part} of round {c.Round}");
        var (start, length) = Segment(c.Segment);
        var (s, n) = Payload.Part(start, length, c.Part, c.Parts);
        if (c.Payload.Length != n * 8) throw new InvalidChunkException($"chunk payload of {c.Payload.Length} bytes, expecting {n * 8}");
        Payload.IntoLongs(c.Payload, _sums.AsSpan(s, n), add: !Gathering);
        _received[c.Part] = true;
        _receivedCount++;
    }
}
