using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;

namespace DistTrain.Cluster.Tests;

/// EvaluationRound as a plain class: pieces, which results count, and the sum in test-set order.
public sealed class EvaluationRoundTests
{
    static readonly string[] Members = ["id-a", "id-b", "id-c"];

    static EvaluationCompleted Result(int start, double loss = 1, int generation = 4, long step = 10) =>
        new(generation, step, start, loss, 1, 1);

    [Fact]
    public void The_pieces_cover_the_test_split_in_order_and_every_member_gets_some()
    {
        var round = new EvaluationRound(4, 10, epoch: 1, testCount: 100, sampleBytes: 784, Members);
        Assert.Equal(Enumerable.Range(0, 100), round.Pieces.SelectMany(p => Enumerable.Range(p.Start, p.Count)));
        Assert.Equal([0, 1, 2], round.Pieces.Select(p => p.Worker).Distinct());
        Assert.Equal(1, round.Epoch);
    }

    [Fact]
    public void Only_this_rounds_result_from_the_member_the_piece_was_given_to_counts_once()
    {
        var round = new EvaluationRound(4, 10, 1, testCount: 90, sampleBytes: 784, Members);
        var (a, b, c) = (round.Pieces[0], round.Pieces[1], round.Pieces[2]);
        Assert.False(round.Add("id-a", Result(a.Start)));
        Assert.False(round.Add("id-a", Result(b.Start)));                 // b's piece, from a
        Assert.False(round.Add("stranger", Result(b.Start)));
        Assert.False(round.Add("id-b", Result(b.Start, generation: 3)));
        Assert.False(round.Add("id-b", Result(b.Start, step: 9)));
        Assert.False(round.Add("id-b", Result(b.Start + 1)));             // no piece starts there
        Assert.False(round.Add("id-a", Result(a.Start)));                 // a repeat
        Assert.Throws<InvalidOperationException>(() => round.Total());
        Assert.False(round.Add("id-b", Result(b.Start)));
        Assert.True(round.Add("id-c", Result(c.Start)));
    }

    [Fact]
    public void The_total_is_summed_in_test_set_order_whatever_order_the_results_arrive_in()
    {
        // 1 + 1e16 - 1e16 is 0 in test-set order and 1 in arrival order: the order is visible.
        var round = new EvaluationRound(4, 10, 1, testCount: 90, sampleBytes: 784, Members);
        double[] losses = [1, 1e16, -1e16];
        for (int p = 2; p >= 0; p--) round.Add(Members[round.Pieces[p].Worker], Result(round.Pieces[p].Start, losses[p]));
        var total = round.Total();
        Assert.Equal(0.0, total.LossSum);
        Assert.Equal(3, total.Samples);
    }
}
