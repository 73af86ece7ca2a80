using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;

namespace DistTrain.Cnn.Tests.Training;

public sealed class TrainingTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-training-").FullName;
    static readonly DatasetFolder Data = DatasetFolder.Synthetic(trainCount: 1024, testCount: 256, seed: 3);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static TrainingPlan Plan(ulong seed = 1, long? maxSteps = 24, ModelSpec? model = null) => new()
    {
        Model = model ?? Presets.LeNet5,
        Optimizer = new OptimizerSettings(OptimizerKind.Momentum, Momentum: 0.9),
        LearningRate = 0.02, GlobalBatch = 32, Epochs = 2, Seed = seed, MaxSteps = maxSteps,
    };

    static string TrainHash(TrainingPlan plan)
    {
        var t = new LocalTrainer(plan, Data);
        t.Run();
        return ParameterHash.Sha256Hex(t.Model.Parameters);
    }

    [Fact]
    public void Same_seed_and_data_give_bitwise_identical_parameters()
    {
        Assert.Equal(TrainHash(Plan(seed: 5)), TrainHash(Plan(seed: 5)));
        Assert.NotEqual(TrainHash(Plan(seed: 5)), TrainHash(Plan(seed: 6)));
    }

    [Fact]
    public void Dropout_model_is_deterministic_and_independent_of_thread_count()
    {
        string Run(int threads)
        {
            int saved = Parallelism.MaxThreads;
            Parallelism.MaxThreads = threads;
            try { return TrainHash(Plan(maxSteps: 4, model: Presets.MnistCnn)); }
            finally { Parallelism.MaxThreads = saved; }
        }
        Assert.Equal(Run(1), Run(2));
    }

    [Fact]
    public void Lenet5_learns_the_synthetic_dataset()
    {
        // 2 epochs of 32 steps on 1024 samples; the classes are separable, so a working
        // forward/backward/update chain is well above 90% on the held-out split (chance is 10%).
        var t = new LocalTrainer(Plan(maxSteps: null), Data);
        var before = t.Evaluate();
        t.Run();
        var after = t.Evaluate();
        Assert.True(after.Accuracy >= 0.9, $"test accuracy {after.Accuracy:F3} after training");
        Assert.True(after.MeanLoss < before.MeanLoss / 3, $"loss {before.MeanLoss:F3} -> {after.MeanLoss:F3}");
    }

    [Fact]
    public void Checkpoint_round_trip_is_bitwise_and_evaluates_the_same()
    {
        var t = new LocalTrainer(Plan(maxSteps: 10), Data);
        t.Run();
        var path = Path.Combine(_dir, "c.safetensors");
        TrainingCheckpoint.Save(path, t.Model, t.Optimizer, t.Step, 0, 1, 32, 16, Data.Name, Data.Sha256);
        var loaded = TrainingCheckpoint.Load(path);
        Assert.Equal(t.Model.Parameters, loaded.Model.Parameters);
        Assert.Equal(t.Optimizer.State[0].Values, loaded.Optimizer!.State[0].Values);
        Assert.Equal(10, loaded.Step);
        Assert.Equal(Data.Sha256, loaded.DatasetSha256);
        var a = t.Evaluate();
        var b = Evaluation.Run(new GradientComputer(loaded.Model, new Cnn.Losses.SoftmaxCrossEntropy()), Data.Test, 500);
        Assert.Equal(a.Correct, b.Correct);
        Assert.Equal(a.LossSum, b.LossSum);
    }

    [Fact]
    public void Resuming_from_a_mid_run_checkpoint_gives_the_uninterrupted_result()
    {
        var plan = Plan(maxSteps: 40);   // crosses the epoch boundary at step 32
        string uninterrupted = TrainHash(plan);

        var first = new LocalTrainer(plan with { MaxSteps = 13 }, Data);
        first.Run();
        var path = Path.Combine(_dir, "mid.safetensors");
        TrainingCheckpoint.Save(path, first.Model, first.Optimizer, first.Step, 0, plan.Seed, plan.GlobalBatch, plan.MicroBatch, Data.Name, Data.Sha256);
        var resumed = new LocalTrainer(plan, Data, TrainingCheckpoint.Load(path));
        resumed.Run();
        Assert.Equal(uninterrupted, ParameterHash.Sha256Hex(resumed.Model.Parameters));
    }

    [Fact]
    public void A_huge_learning_rate_is_reported_as_divergence()
    {
        var t = new LocalTrainer(Plan(maxSteps: 50) with { LearningRate = 1e6 }, Data);
        var e = Assert.Throws<TrainingDivergedException>(() => t.Run());
        Assert.Contains("diverged", e.Message);
    }

    [Fact]
    public void Epoch_order_is_a_permutation_fixed_by_seed_and_epoch()
    {
        var a = new int[1000]; var b = new int[1000]; var c = new int[1000];
        EpochOrder.Fill(7, 0, a); EpochOrder.Fill(7, 0, b); EpochOrder.Fill(7, 1, c);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.Equal(Enumerable.Range(0, 1000), a.OrderBy(x => x));
    }
}
