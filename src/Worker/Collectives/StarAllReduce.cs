using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// The baseline: every worker sends its whole sum to the coordinator (round 0), which adds them
/// and sends the total back to everyone (round 1). The coordinator's side is <see cref="StarReducer"/>.
public sealed class StarAllReduce(int generation, Action<GradientChunk> sendToCoordinator) : IAllReduce
{
    long[] _sums = [];
    readonly int _generation = generation;
    long _step;
    bool[] _received = [];
    int _count;

    bool _sent;

    public void Begin(long step, long[] sums)
    {
        _sums = sums;
        _step = step;
        _received = new bool[Payload.Parts(sums.Length, 8)];
        _count = 0;
        _sent = false;
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
            sendToCoordinator(new GradientChunk(_generation, _step, 0, 0, p, parts, Payload.FromLongs(_sums.AsSpan(s, n))));
        }
        return false;
    }

    public bool Handle(ChunkHeader c, ReadOnlySpan<byte> payload)
    {
        if (c.Generation != _generation || c.Step != _step || c.Round != 1 || c.Parts != _received.Length
            || (uint)c.Part >= (uint)c.Parts || _received[c.Part])
            throw new InvalidChunkException($"unexpected star chunk (generation {c.Generation}, step {c.Step}, round {c.Round}, part {c.Part}/{c.Parts})");
        var (s, n) = Payload.Part(0, _sums.Length, c.Part, c.Parts);
        if (payload.Length != n * 8) throw new InvalidChunkException($"chunk payload of {payload.Length} bytes, expecting {n * 8}");
        Payload.IntoLongs(payload, _sums.AsSpan(s, n), add: false);
        _received[c.Part] = true;
        return ++_count == _received.Length;
    }
}

/// The coordinator's half of the star: adds every worker's parts; when all are in, returns the
/// total as round-1 chunks to broadcast.
public sealed class StarReducer(int length, int workers)
{
    readonly long[] _total = new long[length];
    readonly HashSet<(string Worker, int Part)> _seen = [];
    int _generation = -1;
    long _step = -1;

    public IReadOnlyList<GradientChunk>? Add(string worker, GradientChunk c)
    {
        if (_generation != c.Generation || _step != c.Step)
        {
            Array.Clear(_total);
            _seen.Clear();
            _generation = c.Generation;
            _step = c.Step;
        }
        int parts = Payload.Parts(length, 8);
        if (c.Round != 0 || c.Parts != parts || (uint)c.Part >= (uint)parts || !_seen.Add((worker, c.Part)))
            throw new InvalidChunkException($"unexpected star chunk from {worker} (round {c.Round}, part {c.Part}/{c.Parts})");
        var (s, n) = Payload.Part(0, length, c.Part, parts);
        if (c.Payload.Length != n * 8) throw new InvalidChunkException($"chunk payload of {c.Payload.Length} bytes, expecting {n * 8}");
        Payload.IntoLongs(c.Payload, _total.AsSpan(s, n), add: true);
        if (_seen.Count < workers * parts) return null;
        var result = new List<GradientChunk>(parts);
        for (int p = 0; p < parts; p++)
        {
            var (ps, pn) = Payload.Part(0, length, p, parts);
            result.Add(new GradientChunk(c.Generation, c.Step, 1, 0, p, parts, Payload.FromLongs(_total.AsSpan(ps, pn))));
        }
        return result;
    }
}
