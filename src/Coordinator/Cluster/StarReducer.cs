using DistTrain.Protocol;
using DistTrain.Worker.Collectives;

namespace DistTrain.Coordinator.Cluster;

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
        int parts = GradientCodec.Parts(length);
        if (c.Round != 0 || c.Parts != parts || (uint)c.Part >= (uint)parts || _seen.Contains((worker, c.Part)))
            throw new InvalidChunkException($"unexpected star chunk from {worker} (round {c.Round}, part {c.Part}/{c.Parts})");
        var (s, n) = Payload.Part(0, length, c.Part, parts);
        // Seen only once applied: a part that did not decode may still come whole.
        ChunkPayload.Apply(c.Header, c.Payload, _total.AsSpan(s, n), add: true);
        _seen.Add((worker, c.Part));
        if (_seen.Count < workers * parts) return null;
        var result = new List<GradientChunk>(parts);
        for (int p = 0; p < parts; p++)
        {
            var (ps, pn) = Payload.Part(0, length, p, parts);
            result.Add(new GradientChunk(c.Generation, c.Step, 1, 0, p, parts, GradientCodec.Encode(_total.AsSpan(ps, pn))));
        }
        return result;
    }
}
