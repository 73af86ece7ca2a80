using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;

namespace DistTrain.Cluster.Tests;

/// StepCommit as a plain class: which reports count, and how a step is decided.
public sealed class StepCommitTests
{
    static readonly (string Id, string Name)[] Ring = [("id-a", "a"), ("id-b", "b"), ("id-c", "c")];

    static StepCompleted Report(int generation = 2, long step = 5, double loss = 1.5, long correct = 10, long samples = 16,
                                string hash = "0123456789abcdef", double compute = 1, bool diverged = false, long bytes = 0) =>
        new(generation, step, loss, correct, samples, hash, compute, 0.5, diverged, bytes);

    [Fact]
    public void The_step_is_complete_when_every_member_reported_once_and_nothing_else_counts()
    {
        var commit = new StepCommit(generation: 2, step: 5, Ring);
        Assert.False(commit.Add("id-a", Report()));
        Assert.False(commit.Add("stranger", Report(hash: "forged")));             // not a member
        Assert.False(commit.Add("id-b", Report(generation: 1, hash: "forged")));   // an older generation
        Assert.False(commit.Add("id-b", Report(step: 4, hash: "forged")));         // another step
        Assert.False(commit.Add("id-c", Report(step: 6, hash: "forged")));
        Assert.False(commit.Add("id-a", Report(hash: "forged")));                  // a repeat
        Assert.Throws<InvalidOperationException>(() => commit.Verdict());
        Assert.False(commit.Add("id-b", Report()));
        Assert.True(commit.Add("id-c", Report()));
        Assert.Equal("0123456789abcdef", Assert.IsType<StepVerdict.Committed>(commit.Verdict()).ParameterHash);
    }

    [Fact]
    public void A_committed_step_sums_the_statistics_and_lists_the_reports_in_ring_order_whatever_their_arrival()
    {
        var commit = new StepCommit(2, 5, Ring);
        commit.Add("id-c", Report(loss: 3, correct: 3, samples: 30, compute: 3, bytes: 300));
        commit.Add("id-a", Report(loss: 1, correct: 1, samples: 10, compute: 1, bytes: 100));
        commit.Add("id-b", Report(loss: 2, correct: 2, samples: 20, compute: 2, bytes: 200));
        var c = Assert.IsType<StepVerdict.Committed>(commit.Verdict());
        Assert.Equal(new DistTrain.Cnn.Training.BatchStats(6, 6, 60), c.Stats);
        Assert.Equal("0123456789abcdef", c.ParameterHash);
        Assert.Equal([10L, 20L, 30L], c.Reports.Select(r => r.Samples));
        Assert.Equal(2, c.ComputeSeconds);
        Assert.Equal(0.5, c.ReduceSeconds);
        Assert.Equal(600, c.AllReduceBytes);   // what all members sent
    }

    [Fact]
    public void Replicas_that_report_different_hashes_disagree_and_are_named()
    {
        var commit = new StepCommit(2, 5, Ring);
        commit.Add("id-a", Report());
        commit.Add("id-b", Report(hash: "fedcba9876543210"));
        commit.Add("id-c", Report());
        var d = Assert.IsType<StepVerdict.Disagreed>(commit.Verdict());
        Assert.Equal("replicas disagree after step 6: a=0123456789ab, b=fedcba987654, c=0123456789ab", d.Error);
    }

    [Theory]
    [InlineData(false, double.NaN)]
    [InlineData(false, double.PositiveInfinity)]
    [InlineData(true, 1.0)]
    public void A_replica_that_diverged_or_a_loss_that_is_not_finite_ends_the_step_as_diverged(bool flagged, double loss)
    {
        var commit = new StepCommit(2, 5, Ring[..2]);
        commit.Add("id-a", Report(loss: loss, diverged: flagged));
        commit.Add("id-b", Report(hash: "another"));   // divergence is reported before any disagreement
        var d = Assert.IsType<StepVerdict.Diverged>(commit.Verdict());
        Assert.StartsWith("training diverged at step 6: loss is ", d.Error);
        Assert.EndsWith("; lower --lr", d.Error);
    }
}
