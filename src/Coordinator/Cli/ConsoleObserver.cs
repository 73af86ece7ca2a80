using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Coordinator.Reporting;

namespace DistTrain.Coordinator.Cli;

/// What disttrain train does with the coordinator's news: shows it (live bars or plain lines),
/// keeps the status the --status-port endpoint serves, writes metrics, saves checkpoints, and
/// keeps the time shares of compute, all-reduce and the rest for the summary line.
public sealed class ConsoleObserver(IProgressView view, TrainingStatus status, MetricsWriter? metrics, CheckpointDirectory? checkpoints,
                                    TrainingPlan plan, DatasetFolder data, TensorBoardWriter? tensorBoard = null) : ITrainingObserver
{
    double _wall, _compute, _reduce;

    public void Log(string line)
    {
        status.Event(line);
        view.Log(line);
    }

    /// A metrics or event file that cannot be written any more (a full disk) is given up with one
    /// line; training goes on. The calls come from inside the coordinator actor, which must not throw.
    void Output(string what, Action write, Action giveUp)
    {
        try { write(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            giveUp();
            Log($"warning: {what}: cannot write ({e.Message.ReplaceLineEndings(" ")}); it stops here, training goes on");
        }
    }

    public void StepCompleted(StepReport r, StepTiming t)
    {
        _wall += t.WallSeconds; _compute += t.ComputeSeconds; _reduce += t.ReduceSeconds;
        if (metrics is not null) Output("--metrics", () => metrics.Step(r, t.AllReduceBytes), () => metrics = null);
        if (tensorBoard is not null) Output("--tensorboard", () => tensorBoard.Step(r.Step, r.Loss, r.Accuracy, r.LearningRate, r.ImagesPerSecond), () => tensorBoard = null);
        status.Step(r, t);
        view.Step(status);
    }

    public void EpochCompleted(EpochReport r)
    {
        if (metrics is not null) Output("--metrics", () => metrics.Epoch(r), () => metrics = null);
        if (tensorBoard is not null) Output("--tensorboard", () => tensorBoard.Epoch(r.Step, r.Train.MeanLoss, r.Train.Accuracy, r.Test.MeanLoss, r.Test.Accuracy), () => tensorBoard = null);
        status.Epoch(r);
        view.Epoch(r, plan.Epochs);
    }

    public void CheckpointDue(Model model, Optimizer optimizer, long step)
    {
        if (checkpoints is null) return;
        int epoch = (int)((step - 1) / EpochOrder.StepsPerEpoch(data.Train.Count, plan.GlobalBatch));
        checkpoints.Save(path => TrainingCheckpoint.Save(path, model, optimizer, step, epoch, plan.Seed, plan.GlobalBatch, plan.MicroBatch,
                                                         data.Name, data.Sha256, plan.Augment.ToString(),
                                                         Cnn.Inference.InferenceInfo.Of(data, model.OutputShape.Size)), step);
    }

    /// ", step time: 62% compute, 30% all-reduce, 8% other" (compute and reduce are worker averages).
    public string TimingSummary() => _wall <= 0 ? "" :
        $"; step time {_compute / _wall:P0} compute, {_reduce / _wall:P0} all-reduce, {Math.Max(0, 1 - (_compute + _reduce) / _wall):P0} other";
}
