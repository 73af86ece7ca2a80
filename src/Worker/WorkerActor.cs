using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;

namespace DistTrain.Worker;

/// A replica: joins the coordinator, receives the plan and the model state, then per step
/// computes its micro-batches, all-reduces the exact gradient sum with its peers, applies the
/// same update as everyone and reports the hash of its parameters.
public sealed class WorkerActor : ReceiveActor, IWithStash
{
    /// JoinTimeout: how long to keep trying to register before giving up (default 60 s). Plane: the
    /// gradient data plane to send ring chunks on (null: over Akka.Remote); it delivers what it
    /// receives to this actor as <see cref="RingChunk"/>s.
    public sealed record Settings(string CoordinatorPath, string JobToken, DatasetFolder? Data, int Threads, string Name, TimeSpan? JoinTimeout = null,
                                  DataPlane? Plane = null);

    /// A gradient chunk that came over the data plane from the worker whose ring path is From.
    public sealed record RingChunk(string From, GradientChunk Chunk) : INoSerializationVerificationNeeded;

    readonly Settings _settings;
    /// Called when the worker stops: why (null when the job finished normally).
    readonly Action<string?>? _stopped;
    readonly ILoggingAdapter _log = Context.GetLogger();
    ICancelable? _registerTimer;

    IActorRef _coordinator = ActorRefs.Nobody;
    JobPlan _job = null!;
    TrainingPlan _plan = null!;
    Model _model = null!;
    Optimizer _optimizer = null!;
    GradientComputer _computer = null!;
    LearningRateSchedule _schedule = null!;
    StepSamples _work = null!;
    long[] _sums = [];
    ModelStateTransfer.Assembler? _incoming;

    int _generation;
    IAllReduce? _allReduce;
    /// Who may send this replica gradient chunks in the current generation: its ring predecessor,
    /// or the coordinator for the star. Chunks from anyone else are dropped.
    IActorRef _chunkSender = ActorRefs.Nobody;
    /// The same, as the ring path a data-plane connection must prove it sends for.
    string _predecessorPath = "";
    DataPlane.Link? _link;
    /// The next step this replica will apply (the number of updates it holds).
    long _nextStep;
    /// The replica before its newest update, kept until the next step: when a peer is lost after this
    /// replica applied step t but before the coordinator committed it, the step is rolled back and redone.
    float[] _undoParameters = [];
    float[][] _undoState = [];
    long _undoOptimizerSteps, _undoStep = -1;
    RunStep? _current;
    BatchStats _currentStats;
    bool _currentDiverged;
    double _computeSeconds;
    readonly Stopwatch _reduceClock = new();

    public IStash Stash { get; set; } = null!;

    readonly Action<Layer> _layerDone;   // LayerDone, made once: a step allocates nothing for it

    public WorkerActor(Settings settings, Action<string?>? stopped)
    {
        _settings = settings;
        _stopped = stopped;
        _layerDone = LayerDone;
        Registering();
    }

    public static Props Props(Settings settings, Action<string?>? stopped = null) =>
        Akka.Actor.Props.Create(() => new WorkerActor(settings, stopped)).WithDispatcher("disttrain.worker-dispatcher");

    protected override void PreStart()
    {
        // Registration is retried until the coordinator answers: it may not be up yet.
        _registerTimer = Context.System.Scheduler.ScheduleTellRepeatedlyCancelable(
            TimeSpan.Zero, TimeSpan.FromSeconds(1), Self, RetryRegister.Instance, Self);
    }

    protected override void PostStop()
    {
        _registerTimer?.Cancel();
        _link?.Dispose();
    }

    sealed class RetryRegister { public static readonly RetryRegister Instance = new(); }

    void Registering()
    {
        var since = Stopwatch.StartNew();
        var timeout = _settings.JoinTimeout ?? TimeSpan.FromSeconds(60);
        Receive<RetryRegister>(_ =>
        {
            if (since.Elapsed > timeout)
            {
                Finish($"no answer from the coordinator at {_settings.CoordinatorPath} within {timeout.TotalSeconds:F0}s " +
                       "(is it running, is the address right, do both sides use the same TLS CA?)");
                return;
            }
            var register = new RegisterWorker(ProtocolVersion.Current, _settings.JobToken, _settings.Data?.Sha256 ?? "", _settings.Threads, _settings.Name,
                                              _settings.Plane?.Port ?? 0);
            Context.ActorSelection(_settings.CoordinatorPath).Tell(register);
        });
        Receive<WorkerRefused>(m => Finish($"refused by the coordinator: {m.Reason}"));   // the host prints it
        Receive<WorkerAccepted>(m =>
        {
            if (Sender.Path.ToStringWithoutAddress() != CoordinatorElements) { _log.Warning("ignored an acceptance from {0}, not the coordinator", Sender); return; }
            _registerTimer?.Cancel();
            _coordinator = Sender;
            Context.Watch(_coordinator);
            // Only an admitted worker becomes a cluster member (failure detection, downing): a worker
            // refused for its token never joins the coordinator's cluster.
            if (Context.System is ExtendedActorSystem { Provider: Akka.Cluster.ClusterActorRefProvider })
                Akka.Cluster.Cluster.Get(Context.System).Join(Sender.Path.Address);
            Setup(m.Plan);
            Become(ReceivingState);
        });
        Receive<GradientChunk>(_ => Stash.Stash());
        Receive<RingChunk>(_ => Stash.Stash());
        Receive<StartGeneration>(_ => Stash.Stash());
    }

    string CoordinatorElements => ActorPath.TryParse(_settings.CoordinatorPath, out var path)
        ? path.ToStringWithoutAddress() : _settings.CoordinatorPath;

    /// Invariant 4: only the coordinator that accepted this worker steers it.
    bool FromCoordinator(object message)
    {
        if (Sender.Equals(_coordinator)) return true;
        _log.Warning("ignored {0} from {1}, which is not the coordinator", message.GetType().Name, Sender);
        return false;
    }

    void Setup(JobPlan job)
    {
        _job = job;
        _plan = job.ToTrainingPlan();
        _model = Model.Create(_plan.Model);
        _optimizer = Optimizer.Create(_plan.Optimizer, _model.ParameterCount);
        _computer = new GradientComputer(_model, LossFunctions.Create(_plan.Loss));
        _schedule = _plan.CreateSchedule(job.TrainCount);
        _work = new StepSamples(_plan, job.TrainCount);
        _sums = new long[_model.ParameterCount];
        _incoming = new ModelStateTransfer.Assembler(_model, _optimizer);
        _undoParameters = new float[_model.ParameterCount];
        _undoState = _optimizer.State.Select(v => new float[v.Values.Length]).ToArray();
    }

    void ReceivingState()
    {
        Receive<ModelStateChunk>(m =>
        {
            if (!FromCoordinator(m)) return;
            try { if (!_incoming!.Add(m)) return; }
            catch (InvalidDataException e) { _log.Error("rejected model state from {0}: {1}", Sender, e.Message); return; }
            _incoming = null;
            _nextStep = m.Step;
            Become(Ready);
            Stash.UnstashAll();
        });
        Receive<GradientChunk>(_ => Stash.Stash());
        Receive<RingChunk>(_ => Stash.Stash());
        Receive<StartGeneration>(_ => Stash.Stash());
        Common();
    }

    void Ready()
    {
        Receive<StartGeneration>(g => { if (FromCoordinator(g)) StartGeneration(g); });
        Receive<RunStep>(m => { if (FromCoordinator(m)) RunStep(m); });
        Receive<GradientChunk>(c =>
        {
            if (c.Generation >= _generation) Stash.Stash();   // a peer is already on the next step
        });
        Receive<RingChunk>(c =>
        {
            if (c.Chunk.Generation >= _generation) Stash.Stash();
            else c.Chunk.Release();
        });
        Receive<EvaluateRange>(m => { if (FromCoordinator(m)) Evaluate(m); });
        Receive<RequestModelState>(m => { if (FromCoordinator(m)) SendModelState(m); });
        Common();
    }

    void Reducing()
    {
        Receive<GradientChunk>(c => OnChunk(c, Sender.Equals(_chunkSender), Sender));
        Receive<RingChunk>(c => OnChunk(c.Chunk, c.From == _predecessorPath && _predecessorPath.Length > 0, c.From));
        Receive<StartGeneration>(g =>
        {
            if (!FromCoordinator(g)) return;
            // Membership changed mid-step: drop the half-reduced step; the coordinator redoes it.
            _current = null;
            StartGeneration(g);
            Become(Ready);
            Stash.UnstashAll();
        });
        Receive<RunStep>(_ => Stash.Stash());
        Common();
    }

    void OnChunk(GradientChunk c, bool fromPeer, object from)
    {
        if (c.Generation > _generation || (c.Generation == _generation && c.Step > _current!.Step)) { Stash.Stash(); return; }
        bool done = false;
        try
        {
            if (c.Generation < _generation || c.Step < _current!.Step) return;   // stale
            if (!fromPeer) { _log.Warning("rejected a gradient chunk from {0}, not this replica's peer", from); return; }
            try { done = _allReduce!.Handle(c); }
            catch (InvalidChunkException e) { _log.Warning("rejected gradient chunk from {0}: {1}", from, e.Message); return; }
        }
        finally { c.Release(); }   // a data-plane chunk's buffer goes back to the pool once handled or dropped
        if (done) CompleteStep();
    }

    void Common()
    {
        Receive<JobFinished>(m => { if (FromCoordinator(m)) Finish(null); });
        Receive<Terminated>(t => t.ActorRef.Equals(_coordinator), _ => Finish("lost the coordinator"));
        Receive<WorkerAccepted>(_ => { });
        Receive<RetryRegister>(_ => { });
    }

    void StartGeneration(StartGeneration g)
    {
        if (g.Generation <= _generation) return;
        if (g.Ring.Length == 0 || (uint)g.Rank >= (uint)g.Ring.Length)
        {
            _log.Error("ignored generation {0}: rank {1} in a ring of {2}", g.Generation, g.Rank, g.Ring.Length);
            return;
        }
        if (_nextStep == g.Step + 1 && _undoStep == g.Step) RollBack();
        if (_nextStep != g.Step)
        {
            // Cannot happen while the coordinator keeps replicas within one step of each other; stop
            // rather than train on a replica that differs from the others.
            Finish($"generation {g.Generation} starts at step {g.Step}, this replica holds {_nextStep} steps");
            return;
        }
        _generation = g.Generation;
        _link?.Dispose();   // the previous generation's connection: its successor may be gone
        _link = null;
        _predecessorPath = "";
        if (_job.AllReduce == AllReduceAlgorithm.Star)
        {
            _chunkSender = _coordinator;
            _allReduce = new StarAllReduce(g.Generation, c => _coordinator.Tell(c, Self));
        }
        else
        {
            int n = g.Ring.Length;
            var provider = ((ExtendedActorSystem)Context.System).Provider;
            _chunkSender = provider.ResolveActorRef(g.Ring[(g.Rank + n - 1) % n]);
            _predecessorPath = g.Ring[(g.Rank + n - 1) % n];
            string nextEndpoint = g.DataEndpoints is { } endpoints && endpoints.Length == n ? endpoints[(g.Rank + 1) % n] : "";
            var next = provider.ResolveActorRef(g.Ring[(g.Rank + 1) % n]);
            var self = Self;
            if (_settings.Plane is { } plane && n > 1 && nextEndpoint.Length > 0)
            {
                // Chunks go to the successor over the data plane, sent as this worker's ring path;
                // over Akka.Remote when its data plane cannot be reached.
                var link = _link = plane.Connect(nextEndpoint, g.Ring[g.Rank], fallback: c => next.Tell(c, self));
                _allReduce = new RingAllReduce(g.Generation, g.Rank, n, link.Send, pooled: true);
            }
            else _allReduce = new RingAllReduce(g.Generation, g.Rank, n, c => next.Tell(c, self));
        }
    }

    /// Undoes the newest update (step _undoStep): parameters, optimizer state and its step count.
    void RollBack()
    {
        _undoParameters.CopyTo(_model.Parameters);
        for (int i = 0; i < _undoState.Length; i++) _undoState[i].CopyTo(_optimizer.State[i].Values, 0);
        _optimizer.Steps = _undoOptimizerSteps;
        _nextStep = _undoStep;
        _undoStep = -1;
        _log.Info("rolled back step {0} to redo it in the new generation", _nextStep);
    }

    void RunStep(RunStep m)
    {
        if (m.Generation != _generation) return;
        if (m.Step != _nextStep || m.MicroBatches < 0 || m.FirstMicroBatch < 0 || m.FirstMicroBatch + m.MicroBatches > _plan.MicroBatchCount)
        {
            _log.Error("ignored step {0} (micro-batches {1}+{2}): this replica is at step {3} of a plan with {4} micro-batches per step",
                m.Step, m.FirstMicroBatch, m.MicroBatches, _nextStep, _plan.MicroBatchCount);
            return;
        }
        var clock = Stopwatch.StartNew();
        _current = m;
        Array.Clear(_sums);
        var ids = _work.Of(m.Step, m.FirstMicroBatch, m.MicroBatches);
        Dataset data;
        ReadOnlyMemory<int> rows;
        if (m.Pixels.Length > 0)
        {
            data = new Dataset("shipped", _job.Height, _job.Width, _job.Classes, m.Pixels, m.Labels, _job.Mean, _job.Std);
            rows = Enumerable.Range(0, ids.Length).ToArray();
        }
        else
        {
            data = _settings.Data!.Train;
            rows = ids;
        }
        int epoch = _work.EpochOf(m.Step);
        float scale = 1f / _plan.GlobalBatch;
        _currentStats = new BatchStats();
        _currentDiverged = false;
        _allReduce!.Begin(m.Step, _sums);
        for (int first = 0; first < ids.Length && !_currentDiverged; first += _plan.MicroBatch)
        {
            int n = Math.Min(_plan.MicroBatch, ids.Length - first);
            _model.ZeroGradients();
            var microIds = ids.Slice(first, n);
            // The last micro-batch hands each layer's gradient to the all-reduce as soon as the
            // backward pass has finished it (the last layers first), overlapping communication
            // with the backward pass of the earlier layers.
            bool last = first + n >= ids.Length;
            _currentStats += _computer.Accumulate(data, rows.Slice(first, n), new BatchContext(true, _plan.Seed, epoch, m.Step, microIds), scale,
                                                  last ? _layerDone : null);
            if (!last) _currentDiverged = !FixedPointGradient.Accumulate(_model.Gradients, _sums);
            _currentDiverged |= !double.IsFinite(_currentStats.LossSum);
        }
        _computeSeconds = clock.Elapsed.TotalSeconds;
        _reduceClock.Restart();
        if (_allReduce.Ready(0)) CompleteStep();
        else
        {
            Become(Reducing);
            // A faster peer's chunks for this step may have arrived before RunStep and been stashed.
            Stash.UnstashAll();
        }
    }

    /// After a layer's backward pass in a step's last micro-batch: its slice of the gradient goes
    /// into the fixed-point sum and, from then on, to the all-reduce.
    void LayerDone(Layer layer)
    {
        if (layer.ParameterCount == 0) return;
        int offset = layer.ParameterOffset, count = layer.ParameterCount;
        if (!FixedPointGradient.Accumulate(_model.Gradients.AsSpan(offset, count), _sums.AsSpan(offset, count))) _currentDiverged = true;
        _allReduce!.Ready(offset);
    }

    void CompleteStep()
    {
        var m = _current!;
        double reduceSeconds = _reduceClock.Elapsed.TotalSeconds;
        FixedPointGradient.ToFloat(_sums, _model.Gradients);
        _model.Parameters.CopyTo(_undoParameters);
        for (int i = 0; i < _undoState.Length; i++) _optimizer.State[i].Values.CopyTo(_undoState[i], 0);
        _undoOptimizerSteps = _optimizer.Steps;
        _undoStep = m.Step;
        _nextStep = m.Step + 1;
        _optimizer.Step(_model.Parameters, _model.Gradients, (float)_schedule.At(m.Step));
        _coordinator.Tell(new StepCompleted(m.Generation, m.Step, _currentStats.LossSum, _currentStats.Correct, _currentStats.Samples,
            ParameterHash.ReplicaHex(_model.Parameters), _computeSeconds, reduceSeconds, _currentDiverged), Self);
        _current = null;
        Become(Ready);
        Stash.UnstashAll();
    }

    void Evaluate(EvaluateRange m)
    {
        if (m.Generation != _generation) return;
        BatchStats stats;
        if (m.Pixels.Length > 0)
        {
            var shipped = new Dataset("shipped", _job.Height, _job.Width, _job.Classes, m.Pixels, m.Labels, _job.Mean, _job.Std);
            stats = Evaluation.Run(_computer, shipped, 500);
        }
        else stats = Evaluation.Run(_computer, _settings.Data!.Test, 500, m.Start, m.Start + m.Count);
        Sender.Tell(new EvaluationCompleted(m.Generation, m.Step, m.Start, stats.LossSum, stats.Correct, stats.Samples), Self);
    }

    void SendModelState(RequestModelState m)
    {
        foreach (var chunk in ModelStateTransfer.Chunks(_model, _optimizer, _generation, -1)) Sender.Tell(chunk, Self);
    }

    void Finish(string? error)
    {
        _stopped?.Invoke(error);
        Context.Stop(Self);
    }
}
