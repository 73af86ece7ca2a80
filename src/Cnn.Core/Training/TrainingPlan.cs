using System.Text.Json;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Training;

/// Everything that determines the trained parameters, apart from the data: the same plan on the
/// same data gives bitwise the same model.
public sealed record TrainingPlan
{
    public required ModelSpec Model { get; init; }
    public OptimizerSettings Optimizer { get; init; } = new();
    public double LearningRate { get; init; } = 0.05;
    public string Schedule { get; init; } = "constant";
    public long WarmupSteps { get; init; }
    public string Loss { get; init; } = "cross-entropy";
    public int Epochs { get; init; } = 2;
    public int GlobalBatch { get; init; } = 64;
    /// The global batch is cut into micro-batches of this size (the last may be smaller). Their
    /// gradients are summed exactly (FixedPointGradient), so the result does not depend on which
    /// process computes which micro-batch: the unit of work of the distributed trainer.
    public int MicroBatch { get; init; } = 16;
    public ulong Seed { get; init; } = 1;
    /// Crop and flip of the training samples, drawn from (seed, epoch, sample index).
    public Augmentation Augment { get; init; } = Augmentation.None;
    public long? MaxSteps { get; init; }

    public int MicroBatchCount => (GlobalBatch + MicroBatch - 1) / MicroBatch;

    public long TotalSteps(int trainSamples)
    {
        long all = (long)Epochs * EpochOrder.StepsPerEpoch(trainSamples, GlobalBatch);
        return MaxSteps is long k ? Math.Min(k, all) : all;
    }

    public LearningRateSchedule CreateSchedule(int trainSamples) =>
        LearningRateSchedule.Parse(Schedule, LearningRate, TotalSteps(trainSamples), WarmupSteps);

    /// The settings that must match for a checkpoint to continue this plan.
    public string OptimizerJson => JsonSerializer.Serialize(Optimizer);
}
