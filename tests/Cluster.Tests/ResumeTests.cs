using Akka.TestKit.Xunit2;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// Checkpoints taken from the cluster mid-run continue to exactly the uninterrupted result.
public sealed class ResumeTests() : TestKit(ProtocolConfig.Local(serializeMessages: true))
{
    readonly TempFolder _dir = new("resume");
    static readonly DatasetFolder Data = DatasetFolder.Synthetic(640, 100, seed: 6);
    static readonly TrainingPlan Plan = new()
    {
        // LeNet-5 with batch normalisation after each convolution: its running statistics are summed
        // across the workers with the gradients, saved in the checkpoint and carried over the resume.
        Model = Presets.LeNet5 with { Layers = [.. Presets.LeNet5.Layers.SelectMany(l => l.Type == "conv2d" ? [l, new LayerSpec { Type = "batchnorm" }] : new[] { l })] },
        Optimizer = new OptimizerSettings(OptimizerKind.Momentum), LearningRate = 0.02,
        GlobalBatch = 32, MicroBatch = 16, Epochs = 3, Seed = 9, MaxSteps = 40,   // 20 steps per epoch
        Augment = new Augmentation(2, true),   // drawn from (seed, epoch, sample): the same after a resume on another worker count
    };

    sealed class Saver(string dir) : ITrainingObserver
    {
        public readonly List<long> Saved = [];
        public void Log(string line) { }
        public void StepCompleted(StepReport report, StepTiming timing) { }
        public void EpochCompleted(EpochReport report) { }
        public void CheckpointDue(Model model, Optimizer optimizer, long step)
        {
            TrainingCheckpoint.Save(Path.Combine(dir, $"{step}.safetensors"), model, optimizer, step, 0, Plan.Seed, Plan.GlobalBatch, Plan.MicroBatch, Data.Name, Data.Sha256, Plan.Augment.ToString());
            Saved.Add(step);
        }
    }

    Task<ClusterOutcome> Run(string name, int workers, TrainingCheckpoint? resume, ITrainingObserver observer, long every = 0)
    {
        var settings = new CoordinatorActor.Settings(Plan, Data, AllReduceAlgorithm.Ring, name, workers, resume, CheckpointEveryEpoch: true, CheckpointEverySteps: every);
        return TestClusters.Run(Sys, settings, workers, observer, name);
    }

    [Fact]
    public async Task Resuming_from_a_mid_epoch_checkpoint_with_another_worker_count_gives_the_uninterrupted_hash()
    {
        var uninterrupted = await Run("whole", 2, null, new InProcessCluster.SilentObserver());
        var saver = new Saver(_dir.Path);
        await Run("saving", 3, null, saver, every: 15);
        Assert.Equal([15, 20, 30, 40], saver.Saved);   // every 15 steps, at the epoch end (20) and at the end

        var resumed = await Run("resumed", 1, TrainingCheckpoint.Load(_dir["15.safetensors"]), new InProcessCluster.SilentObserver());
        Assert.Equal(RunStatus.Completed, resumed.Status);
        Assert.Equal(40, resumed.Steps);
        Assert.Equal(uninterrupted.ParameterSha256, resumed.ParameterSha256);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _dir.Dispose();
    }
}
