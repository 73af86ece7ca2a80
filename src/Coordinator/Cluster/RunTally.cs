using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Cluster;

/// What the run has done so far, as the outcome reports it.
internal sealed class RunTally
{
    public RunStatus Status { get; private set; } = RunStatus.Completed;
    public string? Error { get; private set; }
    public bool Consistent { get; set; } = true;
    public int Failures { get; set; }
    public long Redone { get; set; }
    /// The current epoch's training statistics, and their value at the last fetched state.
    public BatchStats EpochStats { get; set; }
    public BatchStats SyncedEpochStats { get; set; }
    public BatchStats LastEpochTrain { get; private set; }
    public BatchStats LastTest { get; private set; }
    /// Time spent in steps (dispatch to the last StepCompleted), not in evaluation or state transfer.
    double _trainSeconds;
    long _trainedImages;

    public void End(RunStatus status, string error) => (Status, Error) = (status, error);

    public void Committed(BatchStats step, double wallSeconds)
    {
        EpochStats += step;
        _trainedImages += step.Samples;
        _trainSeconds += wallSeconds;
    }

    /// Closes the epoch with its test result; returns the epoch's training statistics.
    public BatchStats EpochEvaluated(BatchStats test)
    {
        LastTest = test;
        LastEpochTrain = EpochStats;
        EpochStats = new BatchStats();
        return LastEpochTrain;
    }

    /// A worker failed on the data or the model.
    public bool BadInput { get; set; }

    public ClusterOutcome Outcome(long steps, string sha256, int workers) =>
        new(Status, Error, steps, LastEpochTrain, LastTest, sha256, Consistent, workers, Failures, Redone, _trainSeconds, _trainedImages) { BadInput = BadInput };
}
