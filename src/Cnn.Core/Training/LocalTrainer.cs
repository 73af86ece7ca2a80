using System.Diagnostics;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Training;

public readonly record struct StepReport(long Step, long TotalSteps, int Epoch, double Loss, double Accuracy, double LearningRate, double ImagesPerSecond);

public readonly record struct EpochReport(int Epoch, long Step, BatchStats Train, BatchStats Test, double Seconds, double ImagesPerSecond);

/// Synchronous SGD in this process: one <see cref="Replica"/> computing every micro-batch of each
/// step, with nothing to exchange. The reference the distributed trainer must reproduce, through
/// the same Replica.
public sealed class LocalTrainer
{
    readonly DatasetFolder _data;
    readonly Replica _replica;

    public LocalTrainer(TrainingPlan plan, DatasetFolder data, TrainingCheckpoint? resume = null)
    {
        _data = data;
        _replica = resume is null
            ? Replica.Initialized(plan, data.Train.Count, data.Train)
            : new Replica(plan, data.Train.Count, data.Train, resume.Model, resume.Optimizer!, resume.Step);
    }

    public Model Model => _replica.Model;
    public Optimizer Optimizer => _replica.Optimizer;
    /// Steps completed so far.
    public long Step => _replica.Step;
    public long TotalSteps => _replica.TotalSteps;
    public int StepsPerEpoch => _replica.StepsPerEpoch;
    public BatchStats LastEpochTrain { get; private set; }

    public Action<StepReport>? StepCompleted { get; set; }
    public Action<EpochReport>? EpochCompleted { get; set; }
    /// Called after each epoch and at the end with the number of completed steps.
    public Action<long>? CheckpointDue { get; set; }

    public void Run(CancellationToken cancel = default)
    {
        var epochStats = new BatchStats();
        var epochClock = Stopwatch.StartNew();
        var stepClock = new Stopwatch();
        int microBatches = _replica.Plan.MicroBatchCount;
        while (Step < TotalSteps)
        {
            cancel.ThrowIfCancellationRequested();
            long t = Step;
            int epoch = _replica.EpochOf(t);
            stepClock.Restart();
            var (share, _) = _replica.Compute(0, microBatches, LocalExchange.Instance);
            if (share.Diverged)
                throw new TrainingDivergedException($"training diverged at step {t + 1} (epoch {epoch + 1}): loss is {share.Stats.MeanLoss}; lower --lr");
            _replica.Apply();
            stepClock.Stop();
            epochStats += share.Stats;
            StepCompleted?.Invoke(new StepReport(Step, TotalSteps, epoch, share.Stats.MeanLoss, share.Stats.Accuracy, _replica.LearningRateAt(t),
                                                 share.Stats.Samples / stepClock.Elapsed.TotalSeconds));

            bool epochEnd = Step % StepsPerEpoch == 0 || Step == TotalSteps;
            if (epochEnd)
            {
                double seconds = epochClock.Elapsed.TotalSeconds;
                var test = Evaluate();
                LastEpochTrain = epochStats;
                EpochCompleted?.Invoke(new EpochReport(epoch, Step, epochStats, test, seconds, epochStats.Samples / seconds));
                CheckpointDue?.Invoke(Step);
                epochStats = new BatchStats();
                epochClock.Restart();
            }
        }
    }

    public BatchStats Evaluate() => _replica.Evaluate(_data.Test);
}
