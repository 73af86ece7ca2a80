using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// The baseline: every worker sends its whole sum to the coordinator (round 0), which adds them
/// and sends the total back to everyone (round 1). The coordinator's side is its StarReducer.
public sealed class StarAllReduce(int generation, Action<GradientChunk> sendToCoordinator) : IAllReduce
{
    long[] _sums = [];
    readonly int _generation = generation;
    long _step;
    bool[] _received = [];
    int _count;

    bool _sent;

    public long SentBytes { get; private set; }

    public void Begin(long step, long[] sums)
    {
        _sums = sums;
        _step = step;
        _received = new bool[GradientCodec.Parts(sums.Length)];
        _count = 0;
        _sent = false;
        SentBytes = 0;
    }

    /// The star sends the whole sum at once, when all of it is ready.
    public bool Ready(int from)
    {
        if (from > 0 || _sent) return false;
        _sent = true;
        int parts = _received.Length;
        for (int p = 0; p < parts; p++)
        {
            var (s, n) = Payload.Part(0, _sums.Length, p, parts);
            var payload = GradientCodec.Encode(_sums.AsSpan(s, n));
            SentBytes += payload.Length;
            sendToCoordinator(new GradientChunk(_generation, _step, 0, 0, p, parts, payload));
        }
        return false;
    }

    public bool Handle(ChunkHeader c, ReadOnlySpan<byte> payload)
    {
        if (c.Generation != _generation || c.Step != _step || c.Round != 1 || c.Parts != _received.Length
            || (uint)c.Part >= (uint)c.Parts || _received[c.Part])
            throw new InvalidChunkException($"unexpected star chunk (generation {c.Generation}, step {c.Step}, round {c.Round}, part {c.Part}/{c.Parts})");
        var (s, n) = Payload.Part(0, _sums.Length, c.Part, c.Parts);
        ChunkPayload.Apply(c, payload, _sums.AsSpan(s, n), add: false);
        _received[c.Part] = true;
        return ++_count == _received.Length;
    }
}
