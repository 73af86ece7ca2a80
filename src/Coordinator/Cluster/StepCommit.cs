using DistTrain.Cnn.Training;
using DistTrain.Protocol;

namespace DistTrain.Coordinator.Cluster;

/// How a step ended once every member reported: committed, diverged (NaN/Inf), or the replicas disagree.
public abstract record StepVerdict
{
    /// Reports: each member's StepCompleted, in ring order.
    public sealed record Committed(BatchStats Stats, string ParameterHash, IReadOnlyList<StepCompleted> Reports) : StepVerdict
    {
        public double ComputeSeconds => Reports.Average(r => r.ComputeSeconds);
        public double ReduceSeconds => Reports.Average(r => r.ReduceSeconds);
        /// The gradient payload all members sent in the all-reduce.
        public long AllReduceBytes => Reports.Sum(r => r.AllReduceBytes);
    }

    public sealed record Diverged(string Error) : StepVerdict;
    public sealed record Disagreed(string Error) : StepVerdict;
}

/// Collects the StepCompleted of one step from the members of one generation, and decides the step.
/// Members are named by Id (a stable identity of the sender) and Name (for messages), in ring order.
public sealed class StepCommit(int generation, long step, IReadOnlyList<(string Id, string Name)> members)
{
    readonly StepCompleted?[] _reports = new StepCompleted?[members.Count];
    int _count;

    public int Generation => generation;
    public long Step => step;

    /// True when this report completes the step. Invariant 4: only the current generation's current
    /// step, from a member, once per member, counts; anything else is ignored (false).
    public bool Add(string from, StepCompleted m)
    {
        int rank = IndexOf(from);
        if (m.Generation != generation || m.Step != step || rank < 0 || _reports[rank] is not null) return false;
        _reports[rank] = m;
        return ++_count == members.Count;
    }

    public StepVerdict Verdict()
    {
        if (_count < members.Count) throw new InvalidOperationException($"step {step + 1}: {_count} of {members.Count} reports in");
        var all = _reports.Select(r => r!).ToArray();
        var stats = new BatchStats(all.Sum(x => x.LossSum), all.Sum(x => x.Correct), all.Sum(x => x.Samples));
        if (all.Any(x => x.Diverged) || !double.IsFinite(stats.LossSum))
            return new StepVerdict.Diverged($"training diverged at step {step + 1}: loss is {stats.MeanLoss}; lower --lr");
        if (all.Select(x => x.ParameterHash).Distinct().Count() != 1)
            return new StepVerdict.Disagreed($"replicas disagree after step {step + 1}: " +
                string.Join(", ", all.Select((x, r) => $"{members[r].Name}={x.ParameterHash[..Math.Min(12, x.ParameterHash.Length)]}")));
        return new StepVerdict.Committed(stats, all[0].ParameterHash, all);
    }

    int IndexOf(string id)
    {
        for (int r = 0; r < members.Count; r++) if (members[r].Id == id) return r;
        return -1;
    }
}
