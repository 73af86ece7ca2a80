using System.Diagnostics;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Training;

public readonly record struct StepReport(long Step, long TotalSteps, int Epoch, double Loss, double Accuracy, double LearningRate, double ImagesPerSecond);

public readonly record struct EpochReport(int Epoch, long Step, BatchStats Train, BatchStats Test, double Seconds, double ImagesPerSecond);

/// Synchronous SGD in this process: the reference the distributed trainer must reproduce.
/// Step t trains on the t-th global batch of the (seed, epoch) order, cut into fixed micro-batches
/// whose gradients are summed exactly; nothing else decides the update.
public sealed class LocalTrainer
{
    readonly TrainingPlan _plan;
    readonly DatasetFolder _data;
    readonly GradientComputer _computer;
    readonly LearningRateSchedule _schedule;
    readonly int[] _order;
    readonly long[] _gradientSum;
    readonly int _stepsPerEpoch;
    int _orderEpoch = -1;

    public LocalTrainer(TrainingPlan plan, DatasetFolder data, TrainingCheckpoint? resume = null)
    {
        _plan = plan;
        _data = data;
        if (plan.GlobalBatch < 1) throw new ArgumentException($"--batch: expected a positive number, got {plan.GlobalBatch}");
        if (plan.MicroBatch < 1) throw new ArgumentException($"--micro-batch: expected a positive number, got {plan.MicroBatch}");
        _stepsPerEpoch = EpochOrder.StepsPerEpoch(data.Train.Count, plan.GlobalBatch);
        if (_stepsPerEpoch == 0)
            throw new ArgumentException($"--batch: {plan.GlobalBatch} is larger than the {data.Train.Count} training samples of {data.Name}");
        if (resume is null)
        {
            Model = Model.Create(plan.Model);
            Model.Initialize(plan.Seed);
            Optimizer = Optimizer.Create(plan.Optimizer, Model.ParameterCount);
        }
        else
        {
            Model = resume.Model;
            Optimizer = resume.Optimizer!;
            Step = resume.Step;
        }
        _computer = new GradientComputer(Model, LossFunctions.Create(plan.Loss));
        _schedule = plan.CreateSchedule(data.Train.Count);
        _order = new int[data.Train.Count];
        _gradientSum = new long[Model.ParameterCount];
        TotalSteps = plan.TotalSteps(data.Train.Count);
    }

    public Model Model { get; }
    public Optimizer Optimizer { get; }
    /// Steps completed so far.
    public long Step { get; private set; }
    public long TotalSteps { get; }
    public int StepsPerEpoch => _stepsPerEpoch;
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
        int batch = _plan.GlobalBatch;
        float scale = 1f / batch;
        while (Step < TotalSteps)
        {
            cancel.ThrowIfCancellationRequested();
            long t = Step;
            int epoch = (int)(t / _stepsPerEpoch);
            int position = (int)(t % _stepsPerEpoch);
            if (_orderEpoch != epoch) { EpochOrder.Fill(_plan.Seed, epoch, _order); _orderEpoch = epoch; }
            var ids = _order.AsMemory(position * batch, batch);

            stepClock.Restart();
            var stats = new BatchStats();
            bool finite = true;
            Array.Clear(_gradientSum);
            for (int first = 0; first < batch && finite; first += _plan.MicroBatch)
            {
                var micro = ids.Slice(first, Math.Min(_plan.MicroBatch, batch - first));
                Model.ZeroGradients();
                stats += _computer.Accumulate(_data.Train, micro, new BatchContext(true, _plan.Seed, epoch, t, micro), scale);
                finite = FixedPointGradient.Accumulate(Model.Gradients, _gradientSum);
            }
            if (!finite || !double.IsFinite(stats.LossSum))
                throw new TrainingDivergedException($"training diverged at step {t + 1} (epoch {epoch + 1}): loss is {stats.MeanLoss}; lower --lr");
            FixedPointGradient.ToFloat(_gradientSum, Model.Gradients);
            double lr = _schedule.At(t);
            Optimizer.Step(Model.Parameters, Model.Gradients, (float)lr);
            Step = t + 1;
            stepClock.Stop();
            epochStats += stats;
            StepCompleted?.Invoke(new StepReport(Step, TotalSteps, epoch, stats.MeanLoss, stats.Accuracy, lr, batch / stepClock.Elapsed.TotalSeconds));

            bool epochEnd = Step % _stepsPerEpoch == 0 || Step == TotalSteps;
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

    public BatchStats Evaluate() => Evaluation.Run(_computer, _data.Test, 500);
}
