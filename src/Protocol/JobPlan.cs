using System.Text.Json;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using MessagePack;

namespace DistTrain.Protocol;

/// The job as it travels to workers: the TrainingPlan (as JSON, its own stable format) plus the
/// dataset's identity, its samples' shape (C x H x W) and per-channel normalisation (what a worker
/// without the data needs to make a dataset of shipped samples), and the all-reduce algorithm.
[MessagePackObject]
public sealed record JobPlan(
    [property: Key(0)] string TrainingPlanJson,
    [property: Key(1)] string DatasetName,
    [property: Key(2)] string DatasetSha256,
    [property: Key(3)] int TrainCount,
    [property: Key(4)] int TestCount,
    [property: Key(5)] int Height,
    [property: Key(6)] int Width,
    [property: Key(7)] int Classes,
    [property: Key(8)] float[] Mean,
    [property: Key(9)] float[] Std,
    [property: Key(10)] AllReduceAlgorithm AllReduce,
    [property: Key(11)] int Channels)
{
    public static JobPlan From(TrainingPlan plan, DistTrain.Cnn.Data.DatasetFolder data, AllReduceAlgorithm allReduce) =>
        new(ToJson(plan), data.Name, data.Sha256, data.Train.Count, data.Test.Count, data.Train.Height, data.Train.Width,
            data.Train.Classes, [.. data.Train.Mean], [.. data.Train.Std], allReduce, data.Train.Channels);

    /// Samples shipped to a worker without the data (pixels C x H x W each, in order), normalised as the job's.
    public DistTrain.Cnn.Data.Dataset Shipped(byte[] pixels, byte[] labels) =>
        new("shipped", Channels, Height, Width, Classes, pixels, labels, Mean, Std);

    public TrainingPlan ToTrainingPlan()
    {
        var w = JsonSerializer.Deserialize<WirePlan>(TrainingPlanJson) ?? throw new FormatException("empty training plan");
        return new TrainingPlan
        {
            Model = ModelSpec.FromJson(w.Model, "plan"), Optimizer = w.Optimizer, LearningRate = w.LearningRate,
            Schedule = w.Schedule, WarmupSteps = w.WarmupSteps, Loss = w.Loss, Epochs = w.Epochs,
            GlobalBatch = w.GlobalBatch, MicroBatch = w.MicroBatch, Seed = w.Seed, MaxSteps = w.MaxSteps,
            Augment = DistTrain.Cnn.Data.Augmentation.Parse(w.Augment ?? "none"),
        };
    }

    static string ToJson(TrainingPlan p) => JsonSerializer.Serialize(new WirePlan(
        p.Model.ToJson(), p.Optimizer, p.LearningRate, p.Schedule, p.WarmupSteps, p.Loss, p.Epochs,
        p.GlobalBatch, p.MicroBatch, p.Seed, p.MaxSteps, p.Augment.ToString()));

    sealed record WirePlan(string Model, OptimizerSettings Optimizer, double LearningRate, string Schedule, long WarmupSteps,
                           string Loss, int Epochs, int GlobalBatch, int MicroBatch, ulong Seed, long? MaxSteps, string? Augment);
}
