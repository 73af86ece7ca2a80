using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
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
///
/// With several threads the micro-batches run in parallel lanes, each with the model's layers
/// over the one parameter vector but its own gradients, activations and fixed-point sum; the lane
/// sums are added exactly, so the result is bitwise the one of a single lane. A layer's slice goes
/// to the exchange once every lane has finished that layer in its last micro-batch.
public sealed class Replica
{
    readonly TrainingPlan _plan;
    readonly Dataset? _train;
    readonly ILoss _loss;
    readonly LearningRateSchedule _schedule;
    readonly StepSamples _samples;
    readonly long[] _sums;
    /// Rows 0..GlobalBatch-1: a shipped step's samples are the whole shipped dataset, in order.
    readonly int[] _shippedRows;
    /// Lane 0 computes with Model itself; more lanes are made the first time a step can use them.
    readonly List<Lane> _lanes = [];
    readonly int _threads;
    readonly LaneJob _job;
    readonly EvaluationJob _evaluation;
    readonly UpdateJob _update;
    /// Layers with parameters, last first, and how many lanes have yet to finish each in the run's
    /// last micro-batches (the one that brings it to 0 adds the lanes' slices and tells the exchange).
    readonly Layer[] _parameterLayers;
    readonly int[] _pendingLanes;
    readonly object _exchangeLock = new();
    /// Per micro-batch of the run, summed in micro-batch order whichever lane computed it.
    readonly BatchStats[] _microStats;
    IGradientExchange _exchange = LocalExchange.Instance;
    /// The share of the step being computed or reduced (null between steps).
    StepShare? _share;

    // The replica before its newest update, kept until the next one: when a peer is lost after this
    // replica applied step t but before the coordinator committed it, step t is rolled back and redone.
    // An update reads one parameter vector and writes the other (the optimizer does the same with its
    // state), and the two change places: undoing is changing them back, and nothing is copied.
    float[] _spareParameters;
    long _undoStep = -1;
    /// How many vectors the optimizer keeps beside the parameters (its State builds a list per call).
    readonly int _stateVectors;

    /// A replica of `plan` over a training split of `trainCount` samples whose state is model and
    /// optimizer after `step` updates. `train`: the replica's own copy of the training split, or
    /// null when every step's samples are shipped to it.
    /// `threads`: how many micro-batches may run at once (default: <see cref="Parallelism.MaxThreads"/>).
    public Replica(TrainingPlan plan, int trainCount, Dataset? train, Model model, Optimizer optimizer, long step = 0, int? threads = null)
    {
        if (plan.GlobalBatch < 1) throw new ArgumentException($"--batch: expected a positive number, got {plan.GlobalBatch}");
        if (plan.MicroBatch < 1) throw new ArgumentException($"--micro-batch: expected a positive number, got {plan.MicroBatch}");
        if (EpochOrder.StepsPerEpoch(trainCount, plan.GlobalBatch) == 0)
            throw new ArgumentException($"--batch: {plan.GlobalBatch} is larger than the {trainCount} training samples{(train is null ? "" : $" of {train.Name}")}");
        if (optimizer.Length != model.ParameterCount)
            throw new ArgumentException($"optimizer of {optimizer.Length} parameters for model {model.Name} of {model.ParameterCount}");
        _plan = plan;
        _train = train;
        Model = model;
        Optimizer = optimizer;
        Step = step;
        _loss = LossFunctions.Create(plan.Loss);
        _schedule = plan.CreateSchedule(trainCount);
        _samples = new StepSamples(plan, trainCount);
        _sums = new long[model.ParameterCount];
        _shippedRows = Enumerable.Range(0, plan.GlobalBatch).ToArray();
        _threads = Math.Max(1, threads ?? Parallelism.MaxThreads);
        _parameterLayers = model.Layers.Where(l => l.ParameterCount > 0).Reverse().ToArray();
        _pendingLanes = new int[_parameterLayers.Length];
        _lanes.Add(new Lane(this, model));
        _job = new LaneJob(this);
        _evaluation = new EvaluationJob(this);
        _update = new UpdateJob(this);
        _microStats = new BatchStats[plan.MicroBatchCount];
        _spareParameters = new float[model.ParameterCount];
        _stateVectors = optimizer.State.Count;
        TotalSteps = plan.TotalSteps(trainCount);
    }

    /// A replica at step 0 with the parameters drawn from the plan's seed.
    public static Replica Initialized(TrainingPlan plan, int trainCount, Dataset? train, int? threads = null)
    {
        var model = Model.Create(plan.Model);
        model.Initialize(plan.Seed);
        return new Replica(plan, trainCount, train, model, Optimizer.Create(plan.Optimizer, model.ParameterCount), threads: threads);
    }

    public TrainingPlan Plan => _plan;
    public Model Model { get; }
    public Optimizer Optimizer { get; }
    /// Updates applied so far: the next step this replica computes.
    public long Step { get; private set; }
    public long TotalSteps { get; }
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
        if (shipped is not null && shipped.Count != ids.Length)
            throw new ArgumentException($"{ids.Length} samples expected for step {step + 1}, {shipped.Count} shipped");
        int count = (ids.Length + _plan.MicroBatch - 1) / _plan.MicroBatch;
        int lanes = Math.Min(_threads, count);
        while (_lanes.Count < lanes) _lanes.Add(new Lane(this, Model.Replicate()));
        _exchange = exchange;
        // Cleared before the exchange sees it, which may add a peer's part into a slice before this
        // replica's is ready (RingAllReduce does); the lanes' own sums are written afresh instead.
        Array.Clear(_sums);
        Array.Clear(_microStats);
        exchange.Begin(step, _sums);
        var run = new Run(step, _samples.EpochOf(step), ids, shipped ?? _train!, shipped is null ? ids : _shippedRows.AsMemory(0, ids.Length), count, lanes);
        if (lanes == 1) _lanes[0].Compute(run, 0);
        else
        {
            Array.Fill(_pendingLanes, lanes);
            _job.Start(run);
            // Lanes hand their slices over layer by layer; a diverged lane stops early, so whatever
            // it left is added now (exact, in any order) before the rest of the sum is ready.
            for (int i = 0; i < _parameterLayers.Length; i++)
                if (_pendingLanes[i] > 0) AddLaneSlices(_parameterLayers[i], lanes);
        }
        var stats = new BatchStats();
        bool diverged = false;
        for (int m = 0; m < count; m++) stats += _microStats[m];
        for (int l = 0; l < lanes; l++) diverged |= _lanes[l].Diverged;
        var share = new StepShare(step, stats, diverged || !double.IsFinite(stats.LossSum));
        _share = share;
        return (share, exchange.Ready(0));
    }

    /// Micro-batches 0..Count of one replica's run of step Step; lane l computes those with m % Lanes == l.
    readonly record struct Run(long Step, int Epoch, ReadOnlyMemory<int> Ids, Dataset Data, ReadOnlyMemory<int> Rows, int Count, int Lanes);

    /// Adds the other lanes' sums over `layer`'s slice into the replica's sum (lane 0's own) and tells the exchange.
    void AddLaneSlices(Layer layer, int lanes)
    {
        int offset = layer.ParameterOffset, length = layer.ParameterCount;
        var total = _sums.AsSpan(offset, length);
        for (int l = 1; l < lanes; l++) FixedPointGradient.Add(total, _lanes[l].Sums.AsSpan(offset, length));
        lock (_exchangeLock) _exchange.Ready(offset);
    }

    /// One thread's share of a step: the layers over the replica's parameters with their own
    /// gradients and activations. Lane 0 sums into the replica's sum, the others into their own,
    /// which are added to it layer by layer once every lane has finished the layer.
    sealed class Lane
    {
        readonly Replica _replica;
        readonly Model _model;
        readonly GradientComputer _computer;
        readonly Action<Layer> _layerDone;   // made once: a step allocates nothing for it
        readonly Dictionary<Layer, int> _layerIndex;
        long[] _sums = [], _ownSums = [];
        bool _alone;
        /// Whether the lane's own sum has no part yet in this run: its next micro-batch writes it afresh.
        bool _fresh;
        /// Whether the gradient vector is all zero: each micro-batch's gradient is cleared as it is taken
        /// into the sum; after a divergence or an exception it is cleared before the next run.
        bool _clean;

        public Lane(Replica replica, Model model)
        {
            _replica = replica;
            _model = model;
            _computer = new GradientComputer(model, replica._loss, replica._plan.Augment);
            _layerDone = LayerDone;
            _layerIndex = Enumerable.Range(0, model.Layers.Count).Where(i => model.Layers[i].ParameterCount > 0)
                .ToDictionary(i => model.Layers[i], i => Array.IndexOf(replica._parameterLayers, replica.Model.Layers[i]));
        }

        public long[] Sums => _sums;
        public Model Model => _model;
        public bool Diverged { get; private set; }

        /// Computes the lane's micro-batches of the run; the only lane tells the exchange itself.
        public void Compute(in Run run, int lane)
        {
            _alone = run.Lanes == 1;
            if (lane == 0) _sums = _replica._sums;
            else
            {
                if (_ownSums.Length != _replica._sums.Length) _ownSums = new long[_replica._sums.Length];
                _sums = _ownSums;
            }
            if (!_clean) _model.ZeroGradients();
            _clean = false;
            _fresh = lane != 0;   // lane 0 adds into the replica's sum, which the exchange already holds
            Diverged = false;
            var plan = _replica._plan;
            float scale = 1f / plan.GlobalBatch;
            for (int m = lane; m < run.Count && !Diverged; m += run.Lanes)
            {
                int first = m * plan.MicroBatch, n = Math.Min(plan.MicroBatch, run.Ids.Length - first);
                // The lane's last micro-batch hands each layer's gradient on as soon as the backward pass
                // has finished it (the last layers first), overlapping the exchange with the earlier layers.
                bool last = m + run.Lanes >= run.Count;
                var stats = _computer.Accumulate(run.Data, run.Rows.Slice(first, n),
                    new BatchContext(true, plan.Seed, run.Epoch, run.Step, run.Ids.Slice(first, n)), scale, last ? _layerDone : null);
                _replica._microStats[m] = stats;
                if (!last)
                {
                    Diverged |= !FixedPointGradient.Take(_model.Gradients, _sums, _fresh);
                    _fresh = false;
                }
                Diverged |= !double.IsFinite(stats.LossSum);
            }
            _clean = !Diverged;
        }

        /// After a layer's backward pass in the lane's last micro-batch: its slice goes into the lane's
        /// sum and, once every lane has its slice, to the exchange.
        void LayerDone(Layer layer)
        {
            if (layer.ParameterCount == 0) return;
            int offset = layer.ParameterOffset, count = layer.ParameterCount;
            Diverged |= !FixedPointGradient.Take(_model.Gradients.AsSpan(offset, count), _sums.AsSpan(offset, count), _fresh);
            if (_alone) { _replica._exchange.Ready(offset); return; }
            int i = _layerIndex[layer];
            if (Interlocked.Decrement(ref _replica._pendingLanes[i]) == 0) _replica.AddLaneSlices(_replica._parameterLayers[i], _replica._job.Lanes);
        }

        public GradientComputer Computer => _computer;
    }

    /// Runs the lanes of a step (or of an evaluation) on the kernel threads: one block per lane.
    sealed class LaneJob(Replica replica) : IBlockJob
    {
        Run _run;
        public int Lanes => _run.Lanes;

        public void Start(in Run run)
        {
            _run = run;
            Parallelism.For(run.Lanes, long.MaxValue, this);
        }

        public void Run(int lane) => replica._lanes[lane].Compute(_run, lane);
    }

    /// Applies the exchanged total of step Step (the average gradient of the global batch, exact)
    /// with the optimizer, keeping what is needed to roll it back. Returns the share computed for
    /// it; a diverged share is not applied (its sum is not a gradient), and the run ends on it.
    public StepShare Apply()
    {
        var share = _share ?? throw new InvalidOperationException($"step {Step + 1}: nothing computed to apply");
        _share = null;
        if (share.Diverged) return share;
        _undoStep = Step;
        Optimizer.BeginStep();
        _update.Run((float)_schedule.At(Step));
        Optimizer.EndStep();
        SwapParameters();
        Step++;
        return share;
    }

    /// The spare parameter vector becomes the model's (in every lane), the model's the spare.
    void SwapParameters()
    {
        var current = Model.Parameters;
        foreach (var lane in _lanes) lane.Model.UseParameters(_spareParameters);
        _spareParameters = current;
    }

    /// The update of one step over ranges of the vectors, on the kernel threads: each element is
    /// converted from its fixed-point total and updated from the model's parameters into the
    /// spare vector, exactly as in one pass.
    sealed class UpdateJob(Replica replica) : IBlockJob
    {
        const int Block = 1 << 16;   // a multiple of every vector width
        float _learningRate;
        [ThreadStatic] static float[]? t_gradient;

        public void Run(float learningRate)
        {
            _learningRate = learningRate;
            int length = replica.Model.ParameterCount;
            Parallelism.For((length + Block - 1) / Block, 8L * length * (1 + replica._stateVectors), this);
        }

        public void Run(int block)
        {
            var r = replica;
            int start = block * Block, n = Math.Min(Block, r.Model.ParameterCount - start);
            // The averaged gradient a block at a time in a buffer of the thread's: the model's gradient
            // vector stays clear for the next step's first micro-batch.
            var gradients = (t_gradient ??= new float[Block]).AsSpan(0, n);
            FixedPointGradient.ToFloat(r._sums.AsSpan(start, n), gradients);
            // The optimizer between the statistics' ranges (BatchNorm's running mean and variance), which take their own update.
            var statistics = r.Model.StatisticRanges;
            int at = start, end = start + n;
            for (int k = 0; k < statistics.Count && at < end; k++)
            {
                int s0 = Math.Max(at, statistics[k].Offset), s1 = Math.Min(end, statistics[k].Offset + statistics[k].Length);
                if (s0 >= s1) continue;
                Optimize(r, gradients, start, at, s0, _learningRate);
                BatchNorm.UpdateStatistics(r.Model.Parameters.AsSpan(s0, s1 - s0), r._spareParameters.AsSpan(s0, s1 - s0),
                                           gradients.Slice(s0 - start, s1 - s0), r._plan.GlobalBatch);
                at = s1;
            }
            Optimize(r, gradients, start, at, end, _learningRate);
        }

        /// The optimizer over elements [from, to) of the block that starts at `start`.
        static void Optimize(Replica r, ReadOnlySpan<float> gradients, int start, int from, int to, float learningRate)
        {
            if (to > from)
                r.Optimizer.ApplyRange(r.Model.Parameters.AsSpan(from, to - from), r._spareParameters.AsSpan(from, to - from),
                                       gradients.Slice(from - start, to - from), learningRate, from);
        }
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
            SwapParameters();
            Optimizer.UndoStep();
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
    public BatchStats Evaluate(Dataset data, int start = 0, int? end = null)
    {
        int stop = end ?? data.Count;
        int batches = (stop - start + Evaluation.Batch - 1) / Evaluation.Batch;
        int lanes = Math.Min(_threads, batches);
        if (lanes <= 1) return Evaluation.Run(_lanes[0].Computer, data, Evaluation.Batch, start, stop);
        while (_lanes.Count < lanes) _lanes.Add(new Lane(this, Model.Replicate()));
        return _evaluation.Run(data, start, stop, batches, lanes);
    }

    /// Evaluation in parallel lanes: batch b on lane b % lanes, the batches' sums added in order,
    /// so the figures are those of one lane.
    sealed class EvaluationJob(Replica replica) : IBlockJob
    {
        Dataset _data = null!;
        int _start, _stop, _lanes;
        BatchStats[] _stats = [];
        int[][] _ids = [];

        public BatchStats Run(Dataset data, int start, int stop, int batches, int lanes)
        {
            (_data, _start, _stop, _lanes) = (data, start, stop, lanes);
            if (_stats.Length < batches) _stats = new BatchStats[batches];
            if (_ids.Length < lanes) _ids = Enumerable.Range(0, lanes).Select(_ => new int[Evaluation.Batch]).ToArray();
            Parallelism.For(lanes, long.MaxValue, this);
            var total = new BatchStats();
            for (int b = 0; b < batches; b++) total += _stats[b];
            _data = null!;
            return total;
        }

        public void Run(int lane)
        {
            var ids = _ids[lane];
            for (int first = _start + lane * Evaluation.Batch; first < _stop; first += _lanes * Evaluation.Batch)
            {
                int n = Math.Min(Evaluation.Batch, _stop - first);
                for (int i = 0; i < n; i++) ids[i] = first + i;
                _stats[(first - _start) / Evaluation.Batch] = replica._lanes[lane].Computer.Evaluate(_data, ids.AsMemory(0, n));
            }
        }
    }
}
