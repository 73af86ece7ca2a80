using DistTrain.Cnn.Data;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Training;

/// What a replica's share of step t came to: the summed statistics of its samples, and whether a
/// loss or a gradient was not finite (the step must not be applied anywhere).
public readonly record struct StepShare(long Step, BatchStats Stats, bool Diverged);

/// One copy of the model being trained, and THE training step (DESIGN.md): the single-process
/// trainer and every worker step through this class, so their parameters agree by construction.
/// A step is Compute (the replica's run of micro-batches of step t, each gradient rounded once into
/// the exact fixed-point sum, which goes to a gradient exchange layer by layer as the last
/// backward pass finishes it), then, once the exchange holds the total, Apply (the optimizer
/// update, which can be rolled back until the next step).
public sealed class Replica
{
    readonly TrainingPlan _plan;
    readonly Dataset? _train;
    readonly GradientComputer _computer;
    readonly LearningRateSchedule _schedule;
    readonly StepSamples _samples;
    readonly long[] _sums;
    /// Rows 0..GlobalBatch-1: a shipped step's samples are the whole shipped dataset, in order.
    readonly int[] _shippedRows;
    readonly Action<Layer> _layerDone;   // made once: a step allocates nothing for it
    IGradientExchange _exchange = LocalExchange.Instance;
    /// The share of the step being computed or reduced (null between steps).
    StepShare? _share;
    bool _diverged;

    // The replica before its newest update, kept until the next one: when a peer is lost after this
    // replica applied step t but before the coordinator committed it, step t is rolled back and redone.
    readonly float[] _undoParameters;
    readonly float[][] _undoState;
    /// The optimizer's state vectors, fixed for its lifetime (its State property builds a new list per call).
    readonly float[][] _state;
    long _undoOptimizerSteps, _undoStep = -1;

    /// A replica of `plan` over a training split of `trainCount` samples whose state is model and
    /// optimizer after `step` updates. `train`: the replica's own copy of the training split, or
    /// null when every step's samples are shipped to it.
    public Replica(TrainingPlan plan, int trainCount, Dataset? train, Model model, Optimizer optimizer, long step = 0)
    {
        if (plan.GlobalBatch < 1) throw new ArgumentException($"--batch: expected a positive number, got {plan.GlobalBatch}");
        if (plan.MicroBatch < 1) throw new ArgumentException($"--micro-batch: expected a positive number, got {plan.MicroBatch}");
        if (EpochOrder.StepsPerEpoch(trainCount, plan.GlobalBatch) == 0)
            throw new ArgumentException($"--batch: {plan.GlobalBatch} is larger than the {trainCount} training samples");
        if (optimizer.Length != model.ParameterCount)
            throw new ArgumentException($"optimizer of {optimizer.Length} parameters for model {model.Name} of {model.ParameterCount}");
        _plan = plan;
        _train = train;
        Model = model;
        Optimizer = optimizer;
        Step = step;
        TrainCount = trainCount;
        _computer = new GradientComputer(model, LossFunctions.Create(plan.Loss));
        _schedule = plan.CreateSchedule(trainCount);
        _samples = new StepSamples(plan, trainCount);
        _sums = new long[model.ParameterCount];
        _shippedRows = Enumerable.Range(0, plan.GlobalBatch).ToArray();
        _layerDone = LayerDone;
        _undoParameters = new float[model.ParameterCount];
        _state = optimizer.State.Select(v => v.Values).ToArray();
        _undoState = _state.Select(v => new float[v.Length]).ToArray();
        TotalSteps = plan.TotalSteps(trainCount);
    }

    /// A replica at step 0 with the parameters drawn from the plan's seed.
    public static Replica Initialized(TrainingPlan plan, int trainCount, Dataset? train)
    {
        var model = Model.Create(plan.Model);
        model.Initialize(plan.Seed);
        return new Replica(plan, trainCount, train, model, Optimizer.Create(plan.Optimizer, model.ParameterCount));
    }

    public TrainingPlan Plan => _plan;
    public Model Model { get; }
    public Optimizer Optimizer { get; }
    /// Updates applied so far: the next step this replica computes.
    public long Step { get; private set; }
    public long TotalSteps { get; }
    public int TrainCount { get; }
    public int StepsPerEpoch => _samples.StepsPerEpoch;
    public int EpochOf(long step) => _samples.EpochOf(step);
    public double LearningRateAt(long step) => _schedule.At(step);

    /// The dataset indices of micro-batches [first, first + count) of step `step`.
    public ReadOnlyMemory<int> Samples(long step, int firstMicroBatch, int microBatches) => _samples.Of(step, firstMicroBatch, microBatches);

    /// XxHash128 of the parameters: what replicas compare after every step.
    public string ParameterHash => Training.ParameterHash.ReplicaHex(Model.Parameters);

    /// Why this replica cannot compute micro-batches [first, first + count) of `step`, or null when it can.
    public string? CannotCompute(long step, int firstMicroBatch, int microBatches, bool shipped)
    {
        if (step != Step) return $"step {step} asked, this replica is at step {Step}";
        if (firstMicroBatch < 0 || microBatches < 0 || firstMicroBatch + microBatches > _plan.MicroBatchCount)
            return $"micro-batches {firstMicroBatch}+{microBatches} asked of a plan with {_plan.MicroBatchCount} per step";
        if (!shipped && _train is null) return "no samples shipped, and this replica holds no training data";
        return null;
    }

    /// Computes micro-batches [first, first + count) of step Step and hands their exact gradient sum
    /// to `exchange`: each layer's slice as soon as the last micro-batch's backward pass has
    /// finished it. `shipped` holds exactly those micro-batches' samples, in order, when the replica
    /// has no copy of the data. Returns the share and whether the exchange already holds the total;
    /// otherwise call <see cref="Apply"/> once it does. A diverged share stops computing but still
    /// hands its sum over, so that peers waiting for it are not left hanging.
    public (StepShare Share, bool Reduced) Compute(int firstMicroBatch, int microBatches, IGradientExchange exchange, Dataset? shipped = null)
    {
        long step = Step;
        if (CannotCompute(step, firstMicroBatch, microBatches, shipped is not null) is { } reason) throw new InvalidOperationException(reason);
        var ids = _samples.Of(step, firstMicroBatch, microBatches);
        var data = shipped ?? _train!;
        ReadOnlyMemory<int> rows = shipped is null ? ids : _shippedRows.AsMemory(0, ids.Length);
        if (shipped is not null && shipped.Count != ids.Length)
            throw new ArgumentException($"{ids.Length} samples expected for step {step + 1}, {shipped.Count} shipped");
        int epoch = _samples.EpochOf(step);
        float scale = 1f / _plan.GlobalBatch;
        var stats = new BatchStats();
        _diverged = false;
        _exchange = exchange;
        Array.Clear(_sums);
        exchange.Begin(step, _sums);
        for (int first = 0; first < ids.Length && !_diverged; first += _plan.MicroBatch)
        {
            int n = Math.Min(_plan.MicroBatch, ids.Length - first);
            Model.ZeroGradients();
            // The last micro-batch hands each layer's gradient on as soon as the backward pass has
            // finished it (the last layers first), overlapping the exchange with the earlier layers.
            bool last = first + n >= ids.Length;
            stats += _computer.Accumulate(data, rows.Slice(first, n), new BatchContext(true, _plan.Seed, epoch, step, ids.Slice(first, n)), scale,
                                          last ? _layerDone : null);
            if (!last) _diverged |= !FixedPointGradient.Accumulate(Model.Gradients, _sums);
            _diverged |= !double.IsFinite(stats.LossSum);
        }
        var share = new StepShare(step, stats, _diverged);
        _share = share;
        return (share, exchange.Ready(0));
    }

    /// After a layer's backward pass in the last micro-batch: its slice of the gradient goes into
    /// the fixed-point sum and, from then on, to the exchange.
    void LayerDone(Layer layer)
    {
        if (layer.ParameterCount == 0) return;
        int offset = layer.ParameterOffset, count = layer.ParameterCount;
        _diverged |= !FixedPointGradient.Accumulate(Model.Gradients.AsSpan(offset, count), _sums.AsSpan(offset, count));
        _exchange.Ready(offset);
    }

    /// Applies the exchanged total of step Step (the average gradient of the global batch, exact)
    /// with the optimizer, keeping what is needed to roll it back. Returns the share computed for
    /// it; a diverged share is not applied (its sum is not a gradient), and the run ends on it.
    public StepShare Apply()
    {
        var share = _share ?? throw new InvalidOperationException($"step {Step + 1}: nothing computed to apply");
        _share = null;
        if (share.Diverged) return share;
        FixedPointGradient.ToFloat(_sums, Model.Gradients);
        Model.Parameters.CopyTo(_undoParameters);
        for (int i = 0; i < _state.Length; i++) _state[i].CopyTo(_undoState[i], 0);
        _undoOptimizerSteps = Optimizer.Steps;
        _undoStep = Step;
        Optimizer.Step(Model.Parameters, Model.Gradients, (float)_schedule.At(Step));
        Step++;
        return share;
    }

    /// Forgets the step being computed or reduced (membership changed mid-step: it is redone).
    public void Abandon() => _share = null;

    /// Brings the replica back to `step` updates when it stands one update past it and still holds
    /// that update's undo (it applied the step in flight that a new generation redoes). Returns
    /// whether it now holds `step` updates.
    public bool RollBackTo(long step)
    {
        _share = null;
        if (Step == step + 1 && _undoStep == step)
        {
            _undoParameters.CopyTo(Model.Parameters);
            for (int i = 0; i < _state.Length; i++) _undoState[i].CopyTo(_state[i], 0);
            Optimizer.Steps = _undoOptimizerSteps;
            Step = step;
            _undoStep = -1;
        }
        return Step == step;
    }

    /// The model and optimizer were just overwritten with a replica's state after `step` updates
    /// (a joiner receiving the current state): from now on this replica is at that step.
    public void StateImported(long step)
    {
        Step = step;
        _share = null;
        _undoStep = -1;
    }

    /// Loss and accuracy over samples [start, end) of `data` (all of it when end is null), in batches of 500.
    public BatchStats Evaluate(Dataset data, int start = 0, int? end = null) => Evaluation.Run(_computer, data, 500, start, end);
}
