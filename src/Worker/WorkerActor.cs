using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;
using DistTrain.Worker.DataPlane;

namespace DistTrain.Worker;

/// Hosts a <see cref="Replica"/> in the cluster: joins the coordinator, receives the plan and the
/// model state, then per step routes RunStep into the replica, the replica's gradient sum into the
/// generation's all-reduce and the peers' chunks back, and reports the replica's share and hash.
/// It does no arithmetic of its own: the step is the Replica's.
public sealed class WorkerActor : ReceiveActor, IWithStash
{
    /// JoinTimeout: how long to keep trying to register before giving up (default 60 s). Plane: the
    /// gradient data plane to send ring chunks on (null: over Akka.Remote); it delivers what it
    /// receives to this actor as <see cref="RingChunk"/>s.
    public sealed record Settings(string CoordinatorPath, string JobToken, DatasetFolder? Data, int Threads, string Name, TimeSpan? JoinTimeout = null,
                                  GradientDataPlane? Plane = null)
    {
        /// The most this worker's replica may need (MemoryEstimate), in bytes; 0: no limit. A job
        /// whose model needs more is left at once with the reason (the coordinator ends it, exit 4).
        public long MemoryBudget { get; init; }
    }

    /// A gradient chunk that came over the data plane from the worker whose ring path is From.
    public sealed record RingChunk(string From, ChunkLease Chunk) : INoSerializationVerificationNeeded;

    readonly Settings _settings;
    /// Called when the worker stops: why (null when the job finished normally).
    readonly Action<string?>? _stopped;
    readonly ILoggingAdapter _log = Context.GetLogger();
    ICancelable? _registerTimer;

    IActorRef _coordinator = ActorRefs.Nobody;
    JobPlan _job = null!;
    Replica _replica = null!;
    ModelStateTransfer.Assembler? _incoming;

    int _generation;
    IAllReduce? _allReduce;
    /// Who may send this replica gradient chunks in the current generation: its ring predecessor,
    /// or the coordinator for the star. Chunks from anyone else are dropped.
    IActorRef _chunkSender = ActorRefs.Nobody;
    /// The same, as the ring path a data-plane connection must prove it sends for.
    string _predecessorPath = "";
    Link? _link;
    /// The step being reduced (null between steps).
    RunStep? _current;
    double _computeSeconds;
    readonly Stopwatch _reduceClock = new();

    public IStash Stash { get; set; } = null!;

    public WorkerActor(Settings settings, Action<string?>? stopped)
    {
        _settings = settings;
        _stopped = stopped;
        Registering();
    }

    public static Props Props(Settings settings, Action<string?>? stopped = null) =>
        Akka.Actor.Props.Create(() => new WorkerActor(settings, stopped)).WithDispatcher("disttrain.worker-dispatcher");

    protected override void PreStart()
    {
        // Registration is retried until the coordinator answers: it may not be up yet.
        _registerTimer = Context.System.Scheduler.ScheduleTellRepeatedlyCancelable(
            TimeSpan.Zero, ProtocolConfig.RegisterRetry, Self, RetryRegister.Instance, Self);
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
        var timeout = _settings.JoinTimeout ?? ProtocolConfig.JoinTimeout;
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
            // The coordinator checked its own machine; this one may be smaller. Checked before
            // anything is allocated or the cluster joined; the job goes on without this worker.
            if (OverBudget(m.Plan) is { } reason)
            {
                _coordinator.Tell(new WorkerLeaving(reason), Self);
                Finish($"left the job: {reason}");
                return;
            }
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

    /// Why this worker's --memory-budget cannot hold the job's replica, or null when it can.
    string? OverBudget(JobPlan job)
    {
        if (_settings.MemoryBudget <= 0) return null;
        var plan = job.ToTrainingPlan();
        long need = MemoryEstimate.Of(Model.Measure(plan.Model), plan.Optimizer.Kind, plan.MicroBatch, _settings.Threads).WorkerBytes;
        return need <= _settings.MemoryBudget ? null
            : $"model {plan.Model.Name} needs about {MemoryEstimate.Text(need)} on this worker with {_settings.Threads} thread(s), " +
              $"more than its --memory-budget {MemoryEstimate.Text(_settings.MemoryBudget)}";
    }

    void Setup(JobPlan job)
    {
        _job = job;
        var plan = job.ToTrainingPlan();
        // The state arrives from the coordinator (ReceivingState); until then the model is the seed's.
        _replica = Replica.Initialized(plan, job.TrainCount, _settings.Data?.Train);
        _incoming = new ModelStateTransfer.Assembler(_replica.Model, _replica.Optimizer);
    }

    void ReceivingState()
    {
        Receive<ModelStateChunk>(m =>
        {
            if (!FromCoordinator(m)) return;
            try { if (!_incoming!.Add(m)) return; }
            catch (InvalidDataException e) { _log.Error("rejected model state from {0}: {1}", Sender, e.Message); return; }
            _incoming = null;
            _replica.StateImported(m.Step);
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
            if (c.Chunk.Header.Generation >= _generation) Stash.Stash();
            else c.Chunk.Dispose();
        });
        Receive<EvaluateRange>(m => { if (FromCoordinator(m)) Evaluate(m); });
        Receive<RequestModelState>(m => { if (FromCoordinator(m)) SendModelState(m); });
        Common();
    }

    void Reducing()
    {
        Receive<GradientChunk>(c => OnChunk(c.Header, c.Payload, Sender.Equals(_chunkSender), Sender));
        Receive<RingChunk>(c => OnChunk(c.Chunk.Header, c.Chunk.Bytes, c.From == _predecessorPath && _predecessorPath.Length > 0, c.From, c.Chunk));
        Receive<StartGeneration>(g =>
        {
            if (!FromCoordinator(g)) return;
            // Membership changed mid-step: drop the half-reduced step; the coordinator redoes it.
            _current = null;
            _replica.Abandon();
            StartGeneration(g);
            Become(Ready);
            Stash.UnstashAll();
        });
        Receive<RunStep>(_ => Stash.Stash());
        Common();
    }

    void OnChunk(ChunkHeader c, ReadOnlySpan<byte> payload, bool fromPeer, object from, ChunkLease? lease = null)
    {
        if (c.Generation > _generation || (c.Generation == _generation && c.Step > _current!.Step)) { Stash.Stash(); return; }
        bool done = false;
        try
        {
            if (c.Generation < _generation || c.Step < _current!.Step) return;   // stale
            if (!fromPeer) { _log.Warning("rejected a gradient chunk from {0}, not this replica's peer", from); return; }
            try { done = _allReduce!.Handle(c, payload); }
            catch (InvalidChunkException e) { _log.Warning("rejected gradient chunk from {0}: {1}", from, e.Message); return; }
        }
        finally { lease?.Dispose(); }   // a data-plane chunk's buffer goes back to the pool once handled or dropped
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
        long held = _replica.Step;
        if (!_replica.RollBackTo(g.Step))
        {
            // Cannot happen while the coordinator keeps replicas within one step of each other; stop
            // rather than train on a replica that differs from the others.
            Finish($"generation {g.Generation} starts at step {g.Step}, this replica holds {held} steps");
            return;
        }
        if (held != g.Step) _log.Info("rolled back step {0} to redo it in the new generation", g.Step);
        _generation = g.Generation;
        _link?.Dispose();   // the previous generation's connection: its successor may be gone
        _link = null;
        _predecessorPath = "";
        // The exchange sends from whichever lane thread of the Replica finishes a slice, where Self cannot be read.
        var self = Self;
        if (_job.AllReduce == AllReduceAlgorithm.Star)
        {
            _chunkSender = _coordinator;
            var coordinator = _coordinator;
            _allReduce = new StarAllReduce(g.Generation, c => coordinator.Tell(c, self));
        }
        else
        {
            int n = g.Ring.Length;
            var provider = ((ExtendedActorSystem)Context.System).Provider;
            _chunkSender = provider.ResolveActorRef(g.Ring[(g.Rank + n - 1) % n]);
            _predecessorPath = g.Ring[(g.Rank + n - 1) % n];
            string nextEndpoint = g.DataEndpoints is { } endpoints && endpoints.Length == n ? endpoints[(g.Rank + 1) % n] : "";
            var next = provider.ResolveActorRef(g.Ring[(g.Rank + 1) % n]);
            if (_settings.Plane is { } plane && n > 1 && nextEndpoint.Length > 0)
            {
                // Chunks go to the successor over the data plane, sent as this worker's ring path;
                // over Akka.Remote when its data plane cannot be reached.
                var link = _link = plane.Connect(nextEndpoint, g.Ring[g.Rank], fallback: c => next.Tell(c, self));
                _allReduce = new RingAllReduce(g.Generation, g.Rank, n, link);
            }
            else _allReduce = new RingAllReduce(g.Generation, g.Rank, n, c => next.Tell(c, self));
        }
    }

    void RunStep(RunStep m)
    {
        if (m.Generation != _generation) return;
        bool shipped = m.Pixels.Length > 0;
        if (_replica.CannotCompute(m.Step, m.FirstMicroBatch, m.MicroBatches, shipped) is { } reason)
        {
            _log.Error("ignored step {0} (micro-batches {1}+{2}): {3}", m.Step, m.FirstMicroBatch, m.MicroBatches, reason);
            return;
        }
        var clock = Stopwatch.StartNew();
        _current = m;
        bool reduced = _replica.Compute(m.FirstMicroBatch, m.MicroBatches, _allReduce!, shipped ? Shipped(m.Pixels, m.Labels) : null).Reduced;
        _computeSeconds = clock.Elapsed.TotalSeconds;
        _reduceClock.Restart();
        if (reduced) CompleteStep();
        else
        {
            Become(Reducing);
            // A faster peer's chunks for this step may have arrived before RunStep and been stashed.
            Stash.UnstashAll();
        }
    }

    Dataset Shipped(byte[] pixels, byte[] labels) => _job.Shipped(pixels, labels);

    void CompleteStep()
    {
        var m = _current!;
        double reduceSeconds = _reduceClock.Elapsed.TotalSeconds;
        var share = _replica.Apply();
        _coordinator.Tell(new StepCompleted(m.Generation, m.Step, share.Stats.LossSum, share.Stats.Correct, share.Stats.Samples,
            _replica.ParameterHash, _computeSeconds, reduceSeconds, share.Diverged, _allReduce!.SentBytes), Self);
        _current = null;
        Become(Ready);
        Stash.UnstashAll();
    }

    void Evaluate(EvaluateRange m)
    {
        if (m.Generation != _generation) return;
        var stats = m.Pixels.Length > 0
            ? _replica.Evaluate(Shipped(m.Pixels, m.Labels))
            : _replica.Evaluate(_settings.Data!.Test, m.Start, m.Start + m.Count);
        Sender.Tell(new EvaluationCompleted(m.Generation, m.Step, m.Start, stats.LossSum, stats.Correct, stats.Samples), Self);
    }

    void SendModelState(RequestModelState m)
    {
        foreach (var chunk in ModelStateTransfer.Chunks(_replica.Model, _replica.Optimizer, _generation, -1)) Sender.Tell(chunk, Self);
    }

    /// An exception in any handler (a step, an evaluation, the state, the model too big to build):
    /// Akka would restart this actor, which would register again and be ignored while the job hung.
    /// Instead the coordinator learns the reason at once and the worker stops.
    protected override bool AroundReceive(Receive receive, object message)
    {
        try { return base.AroundReceive(receive, message); }
        catch (Exception e) when (e is not (ActorKilledException or DeathPactException or ThreadAbortException))
        {
            bool badInput = e is ArgumentException or FormatException or InvalidDataException or IndexOutOfRangeException or DataFormatException;
            string reason = $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}";
            _log.Error("{0} failed on {1}: {2}", _settings.Name, message.GetType().Name, reason);
            if (!_coordinator.IsNobody()) _coordinator.Tell(new WorkerFailed(_generation, reason, badInput), Self);
            Finish($"failed: {reason}");
            return true;
        }
    }

    void Finish(string? error)
    {
        _stopped?.Invoke(error);
        Context.Stop(Self);
    }
}
