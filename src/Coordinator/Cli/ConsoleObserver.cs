using System.Diagnostics;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Coordinator.Reporting;

namespace DistTrain.Coordinator.Cli;

/// Prints progress (a line per epoch and every 10 s), writes metrics, saves checkpoints, and keeps
/// the time shares of compute, all-reduce and waiting for the summary line.
public sealed class ConsoleObserver(TextWriter output, MetricsWriter? metrics, CheckpointDirectory? checkpoints,
                                    TrainingPlan plan, DatasetFolder data) : ITrainingObserver
{
    readonly Stopwatch _sinceProgress = Stopwatch.StartNew();
    double _wall, _compute, _reduce;
    long _steps;

    public void Log(string line) => output.WriteLine(line);

    public void StepCompleted(StepReport r, StepTiming t)
    {
        _steps++;
        _wall += t.WallSeconds; _compute += t.ComputeSeconds; _reduce += t.ReduceSeconds;
        metrics?.Step(r);
        if (_sinceProgress.Elapsed.TotalSeconds < 10) return;
        _sinceProgress.Restart();
        output.WriteLine($"  step {r.Step}/{r.TotalSteps}  loss {r.Loss:F4}  acc {r.Accuracy:F4}  lr {r.LearningRate:G4}  {plan.GlobalBatch * _steps / _wall:F0} img/s");
    }

    public void EpochCompleted(EpochReport r)
    {
        metrics?.Epoch(r);
        output.WriteLine($"epoch {r.Epoch + 1}/{plan.Epochs}  step {r.Step}  train_loss {r.Train.MeanLoss:F4}  train_acc {r.Train.Accuracy:F4}  " +
                         $"test_loss {r.Test.MeanLoss:F4}  test_acc {r.Test.Accuracy:F4}  {r.ImagesPerSecond:F0} img/s  {r.Seconds:F1}s");
    }

    public void CheckpointDue(Model model, Optimizer optimizer, long step)
    {
        if (checkpoints is null) return;
        int epoch = (int)((step - 1) / EpochOrder.StepsPerEpoch(data.Train.Count, plan.GlobalBatch));
        checkpoints.Save(path => TrainingCheckpoint.Save(path, model, optimizer, step, epoch, plan.Seed, plan.GlobalBatch, plan.MicroBatch,
                                                         data.Name, data.Sha256), step);
    }

    /// ", step time: 62% compute, 30% all-reduce, 8% other" (compute and reduce are worker averages).
    public string TimingSummary() => _wall <= 0 ? "" :
        $"; step time {_compute / _wall:P0} compute, {_reduce / _wall:P0} all-reduce, {Math.Max(0, 1 - (_compute + _reduce) / _wall):P0} other";
}
