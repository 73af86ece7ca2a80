using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;

namespace DistTrain.Cnn.Tests.Training;

/// The step written once: replicas that split a global batch among themselves and add their exact
/// sums end bitwise where one replica computing all of it ends (invariant 3 without any actor),
/// the exchange sees only finished slices, and a rolled-back update leaves no trace.
public sealed class ReplicaTests
{
    static readonly DatasetFolder Data = DatasetFolder.Synthetic(trainCount: 512, testCount: 64, seed: 11);

    static TrainingPlan Plan(ModelSpec? model = null, OptimizerKind optimizer = OptimizerKind.Momentum) => new()
    {
        Model = model ?? Presets.LeNet5,
        Optimizer = new OptimizerSettings(optimizer),
        LearningRate = 0.02, GlobalBatch = 48, MicroBatch = 8, Epochs = 1, Seed = 4, MaxSteps = 6,
    };

    /// Holds each replica's sum until the test adds them all up (a transport that delivers later).
    sealed class HeldExchange : IGradientExchange
    {
        public long[] Sums = [];
        public long Step = -1;
        public void Begin(long step, long[] sums) { Step = step; Sums = sums; }
        public bool Ready(int from) => false;
    }

    /// Records, at every Ready(from), the sums from `from` on, to compare with the final sums.
    sealed class RecordingExchange : IGradientExchange
    {
        long[] _sums = [];
        public readonly List<(int From, long[] Tail)> Calls = [];
        public void Begin(long step, long[] sums) => _sums = sums;
        public bool Ready(int from) { Calls.Add((from, _sums[from..])); return from == 0; }
    }

    static (int First, int Count)[] Cut(int microBatches, int replicas) =>
        Enumerable.Range(0, replicas).Select(r => (microBatches * r / replicas, microBatches * (r + 1) / replicas - microBatches * r / replicas)).ToArray();

    [Theory]
    [InlineData(2, OptimizerKind.Momentum)]
    [InlineData(3, OptimizerKind.Adam)]
    [InlineData(6, OptimizerKind.Sgd)]
    public void Replicas_that_split_each_step_end_bitwise_where_one_replica_ends(int replicas, OptimizerKind optimizer)
    {
        var plan = Plan(optimizer: optimizer);
        var reference = new LocalTrainer(plan, Data);
        reference.Run();

        var group = Enumerable.Range(0, replicas).Select(_ => Replica.Initialized(plan, Data.Train.Count, Data.Train)).ToArray();
        var exchanges = group.Select(_ => new HeldExchange()).ToArray();
        var cut = Cut(plan.MicroBatchCount, replicas);
        for (long step = 0; step < plan.MaxSteps; step++)
        {
            for (int r = 0; r < replicas; r++)
            {
                var (share, reduced) = group[r].Compute(cut[r].First, cut[r].Count, exchanges[r]);
                Assert.False(reduced);
                Assert.False(share.Diverged);
                Assert.Equal(step, exchanges[r].Step);
            }
            var total = new long[group[0].Model.ParameterCount];
            foreach (var e in exchanges) FixedPointGradient.Add(total, e.Sums);
            foreach (var e in exchanges) total.CopyTo(e.Sums, 0);   // what an all-reduce leaves on every replica
            foreach (var replica in group) replica.Apply();
        }
        foreach (var replica in group)
        {
            Assert.Equal(plan.MaxSteps, replica.Step);
            Assert.Equal(ParameterHash.Sha256Hex(reference.Model.Parameters), ParameterHash.Sha256Hex(replica.Model.Parameters));
        }
    }

    /// The gradient vector is cleared as it is taken into the sums, and the lanes' own sums are written
    /// afresh: a replica handed a model with a used gradient vector, or asked for no micro-batch after
    /// a step with many, still hands over exactly its share.
    [Fact]
    public void Leftovers_of_an_earlier_step_or_a_used_model_never_enter_a_sum()
    {
        var plan = Plan() with { MaxSteps = 2 };
        var reference = new LocalTrainer(plan, Data);
        reference.Run();

        var model = Model.Create(plan.Model);
        model.Initialize(plan.Seed);
        model.Gradients.AsSpan().Fill(0.5f);   // as a model that went through a backward pass elsewhere
        var used = new Replica(plan, Data.Train.Count, Data.Train, model, Optimizer.Create(plan.Optimizer, model.ParameterCount));
        for (int step = 0; step < 2; step++)
        {
            used.Compute(0, plan.MicroBatchCount, new HeldExchange());
            used.Apply();
        }
        var withNothing = new HeldExchange();
        used.Compute(0, 0, withNothing);   // the next step, no micro-batch: an empty share, not the last step's sum
        Assert.All(withNothing.Sums, s => Assert.Equal(0L, s));
        Assert.Equal(ParameterHash.Sha256Hex(reference.Model.Parameters), ParameterHash.Sha256Hex(used.Model.Parameters));
    }

    /// A peer's part added into the sum as soon as the exchange holds it (as RingAllReduce may, before
    /// this replica's slice is ready) stays in the total, on one lane or several.
    sealed class EarlyPeerExchange : IGradientExchange
    {
        public long[] Sums = [];
        public void Begin(long step, long[] sums) { Sums = sums; sums[0] += 1_000_000; sums[^1] -= 7; }
        public bool Ready(int from) => false;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_peer_part_added_before_the_slice_is_ready_stays_in_the_total(int threads)
    {
        var plan = Plan();
        var alone = new HeldExchange();
        Replica.Initialized(plan, Data.Train.Count, Data.Train, threads).Compute(0, plan.MicroBatchCount, alone);
        var early = new EarlyPeerExchange();
        Replica.Initialized(plan, Data.Train.Count, Data.Train, threads).Compute(0, plan.MicroBatchCount, early);
        var expected = (long[])alone.Sums.Clone();
        expected[0] += 1_000_000;
        expected[^1] -= 7;
        Assert.Equal(expected, early.Sums);
    }

    [Theory]
    [InlineData("lenet5", OptimizerKind.Momentum)]
    [InlineData("mnist-cnn", OptimizerKind.Adam)]   // dropout: masks from the sample, not the lane
    public void Micro_batches_in_parallel_lanes_give_the_bits_and_figures_of_one_lane(string model, OptimizerKind optimizer)
    {
        var plan = Plan(Presets.Resolve(model), optimizer) with { MaxSteps = 3 };
        (string Hash, StepShare[] Shares, BatchStats Test) Train(int threads)
        {
            var replica = Replica.Initialized(plan, Data.Train.Count, Data.Train, threads);
            var shares = new StepShare[3];
            for (int step = 0; step < 3; step++)
            {
                // Runs of 6, 5 and 1 micro-batches: lanes with more, as many and fewer micro-batches than threads.
                int first = step == 1 ? 1 : 0, count = step switch { 0 => 6, 1 => 5, _ => 1 };
                var exchange = new HeldExchange();
                shares[step] = replica.Compute(first, count, exchange).Share;
                replica.Apply();
            }
            return (replica.ParameterHash, shares, replica.Evaluate(Data.Test));
        }
        var one = Train(1);
        foreach (int threads in new[] { 2, 3, 8 })
        {
            var many = Train(threads);
            Assert.Equal(one.Hash, many.Hash);
            Assert.Equal(one.Shares, many.Shares);
            Assert.Equal(one.Test, many.Test);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void The_exchange_is_told_of_a_slice_only_once_it_holds_the_whole_contribution(int threads)
    {
        var replica = Replica.Initialized(Plan(Presets.MnistCnn), Data.Train.Count, Data.Train, threads);
        var exchange = new RecordingExchange();
        var (_, reduced) = replica.Compute(0, 3, exchange);
        Assert.True(reduced);
        var final = exchange.Calls[^1].Tail;
        Assert.Equal(0, exchange.Calls[^1].From);
        // One call per layer with parameters and the closing Ready(0), from the last layer to the first.
        int layersWithParameters = replica.Model.Layers.Count(l => l.ParameterCount > 0);
        Assert.Equal(layersWithParameters + 1, exchange.Calls.Count);
        Assert.Equal(exchange.Calls.Select(c => c.From).OrderByDescending(f => f), exchange.Calls.Select(c => c.From));
        foreach (var (from, tail) in exchange.Calls)
            Assert.True(tail.AsSpan().SequenceEqual(final.AsSpan(from)), $"sums[{from}..] changed after the exchange was told they were ready");
        Assert.Contains(final, v => v != 0);
    }

    [Fact]
    public void A_rolled_back_update_leaves_no_trace_and_the_redone_step_gives_the_same_bits()
    {
        var plan = Plan(optimizer: OptimizerKind.Adam);
        var replica = Replica.Initialized(plan, Data.Train.Count, Data.Train);
        replica.Compute(0, plan.MicroBatchCount, LocalExchange.Instance);
        replica.Apply();
        var parameters = replica.Model.Parameters.ToArray();
        var state = replica.Optimizer.State.Select(s => s.Values.ToArray()).ToArray();
        long optimizerSteps = replica.Optimizer.Steps;

        replica.Compute(0, plan.MicroBatchCount, LocalExchange.Instance);
        replica.Apply();
        string applied = replica.ParameterHash;
        Assert.True(replica.RollBackTo(1));
        Assert.Equal(1, replica.Step);
        Assert.Equal(parameters, replica.Model.Parameters);
        for (int i = 0; i < state.Length; i++) Assert.Equal(state[i], replica.Optimizer.State[i].Values);
        Assert.Equal(optimizerSteps, replica.Optimizer.Steps);

        replica.Compute(0, plan.MicroBatchCount, LocalExchange.Instance);
        replica.Apply();
        Assert.Equal(applied, replica.ParameterHash);
        // Only the newest update can be undone.
        Assert.False(replica.RollBackTo(0));
        Assert.Equal(2, replica.Step);
    }

    [Fact]
    public void A_diverged_share_is_reported_and_not_applied()
    {
        var plan = Plan();
        var replica = Replica.Initialized(plan, Data.Train.Count, Data.Train);
        replica.Model.Parameters[^1] = float.NaN;   // the output layer's last bias: every loss is NaN
        var before = replica.Model.Parameters.ToArray();
        var (share, _) = replica.Compute(0, plan.MicroBatchCount, LocalExchange.Instance);
        Assert.True(share.Diverged);
        Assert.True(replica.Apply().Diverged);
        Assert.Equal(0, replica.Step);
        Assert.Equal(before, replica.Model.Parameters);
    }

    [Fact]
    public void A_step_it_cannot_compute_is_named_and_refused()
    {
        var plan = Plan();
        var replica = Replica.Initialized(plan, Data.Train.Count, Data.Train);
        Assert.Equal("step 3 asked, this replica is at step 0", replica.CannotCompute(3, 0, 1, shipped: false));
        Assert.Equal($"micro-batches 4+3 asked of a plan with {plan.MicroBatchCount} per step", replica.CannotCompute(0, 4, 3, shipped: false));
        Assert.Null(replica.CannotCompute(0, 0, plan.MicroBatchCount, shipped: false));
        var dataless = Replica.Initialized(plan, Data.Train.Count, train: null);
        Assert.Equal("no samples shipped, and this replica holds no training data", dataless.CannotCompute(0, 0, 1, shipped: false));
        Assert.Throws<InvalidOperationException>(() => dataless.Compute(0, 1, LocalExchange.Instance));
        Assert.Throws<InvalidOperationException>(() => replica.Apply());   // nothing computed
    }

    [Fact]
    public void Shipped_samples_give_the_bits_of_the_replicas_own_copy()
    {
        var plan = Plan();
        var own = Replica.Initialized(plan, Data.Train.Count, Data.Train);
        var dataless = Replica.Initialized(plan, Data.Train.Count, train: null);
        for (int step = 0; step < 3; step++)
        {
            var ids = dataless.Samples(step, 0, plan.MicroBatchCount).Span;
            var train = Data.Train;
            var pixels = new byte[ids.Length * train.SampleSize];
            var labels = new byte[ids.Length];
            for (int i = 0; i < ids.Length; i++)
            {
                train.Pixels.Slice(ids[i] * train.SampleSize, train.SampleSize).CopyTo(pixels.AsSpan(i * train.SampleSize));
                labels[i] = train.Label(ids[i]);
            }
            var shipped = new Dataset("shipped", train.Channels, train.Height, train.Width, train.Classes, pixels, labels, [.. train.Mean], [.. train.Std]);
            Assert.Equal(own.Compute(0, plan.MicroBatchCount, LocalExchange.Instance).Share,
                         dataless.Compute(0, plan.MicroBatchCount, LocalExchange.Instance, shipped).Share);
            own.Apply();
            dataless.Apply();
            Assert.Equal(own.ParameterHash, dataless.ParameterHash);
        }
    }
}
