using DistTrain.Cnn.Training;
using DistTrain.Protocol;

namespace DistTrain.Coordinator.Cluster;

/// One evaluation of the test split after `step` steps: cut into pieces among the members (in ring
/// order, by Id), collected, and summed in test-set order so the loss is the same for any worker count.
public sealed class EvaluationRound
{
    readonly int _generation;
    readonly IReadOnlyList<string> _members;
    readonly SortedDictionary<int, EvaluationCompleted> _results = [];

    public EvaluationRound(int generation, long step, int epoch, int testCount, int sampleBytes, IReadOnlyList<string> members)
    {
        _generation = generation;
        _members = members;
        Step = step;
        Epoch = epoch;
        Pieces = StepWork.EvaluationPieces(testCount, sampleBytes, members.Count, ProtocolConfig.MaxPayloadBytes);
    }

    public long Step { get; }
    public int Epoch { get; }
    /// (member rank, first test sample, count) for every piece, in test-set order.
    public IReadOnlyList<(int Worker, int Start, int Count)> Pieces { get; }

    /// True when this result completes the round. Only this generation's round, from the member the
    /// piece was given to, once per piece, counts.
    public bool Add(string from, EvaluationCompleted m)
    {
        if (m.Generation != _generation || m.Step != Step || _results.ContainsKey(m.Start)) return false;
        if (!Pieces.Any(p => p.Start == m.Start && _members[p.Worker] == from)) return false;
        _results[m.Start] = m;
        return _results.Count == Pieces.Count;
    }

    /// The test split's loss and accuracy counts, summed in test-set order.
    public BatchStats Total()
    {
        if (_results.Count < Pieces.Count) throw new InvalidOperationException($"evaluation after step {Step}: {_results.Count} of {Pieces.Count} pieces in");
        var all = _results.Values;
        return new BatchStats(all.Sum(x => x.LossSum), all.Sum(x => x.Correct), all.Sum(x => x.Samples));
    }
}
