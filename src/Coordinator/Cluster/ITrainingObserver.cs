using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Cluster;

/// What the coordinator tells the outside world (the CLI, a test) while it trains.
public interface ITrainingObserver
{
    void Log(string line);
    void StepCompleted(StepReport report, StepTiming timing);
    void EpochCompleted(EpochReport report);
    /// The coordinator's copy of the model holds the replicas' state after `step` steps.
    void CheckpointDue(Model model, Optimizer optimizer, long step);
}

/// Where a step's time went, averaged over workers: computing, reducing, and the rest (waiting,
/// messaging); what each worker did in it; and the gradient payload bytes all workers sent in its
/// all-reduce (encoded; the star's broadcast from the coordinator is not among them).
public readonly record struct StepTiming(double WallSeconds, double ComputeSeconds, double ReduceSeconds, IReadOnlyList<WorkerShare> Workers,
                                         long AllReduceBytes);

/// One worker's part of a step: the images it computed and the seconds its compute took.
public readonly record struct WorkerShare(string Name, long Samples, double ComputeSeconds);

/// How a run ended.
public sealed record ClusterOutcome(
    RunStatus Status, string? Error, long Steps, BatchStats LastEpochTrain, BatchStats LastTest, string ParameterSha256,
    bool ReplicasConsistent, int Workers, int WorkerFailures, long RedoneSteps, double TrainSeconds, long TrainedImages)
{
    /// A worker failed on the data or the model (WorkerFailed.BadInput): the user's input, exit 2.
    public bool BadInput { get; init; }
}
