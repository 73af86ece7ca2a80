using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Akka.Remote;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;

namespace DistTrain.Coordinator.Cluster;

/// Orchestrates synchronous data-parallel training: admits workers, cuts each global batch into
/// micro-batch runs in ring order, checks after every step that all replicas hold the same
/// parameters, shares evaluation, and fetches the state for checkpoints and the final report.
/// Phases are behaviours that carry their own state: WaitingForWorkers, Training(step),
/// Evaluating(round), FetchingState(fetch, then), Finished; the logic lives in Admission,
/// StepCommit, EvaluationRound and StateFetch. Membership changes start a new generation: what a
/// lost worker interrupts is redone by the live workers, joiners receive the current state and
/// enter at the next step, and with no worker left training restarts from the coordinator's last
/// copy of the state when one joins.
public sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public sealed record Settings(
        TrainingPlan Plan, DatasetFolder Data, AllReduceAlgorithm AllReduce, string JobToken, int ExpectedWorkers,
        TrainingCheckpoint? Resume, bool CheckpointEveryEpoch, long CheckpointEverySteps = 0, TimeSpan? WorkerWait = null,
        TimeSpan? AdmissionGrace = null)
    {
        /// The parameters to start from instead of the seed's (--init-from); not used when resuming.
        public float[]? InitialParameters { get; init; }

        /// After an interrupt, how long what is in flight may take before the run stops without it.
        public TimeSpan StopGrace { get; init; } = ProtocolConfig.StopGrace;

        /// A cluster member with no admitted worker after this long is downed.
        public TimeSpan AdmissionGraceOrDefault => AdmissionGrace ?? ProtocolConfig.AdmissionGrace;

        /// How long to wait for workers: for the job's workers at the start, and for a replacement
        /// when none is left. Then training starts with those present, or the run fails (exit 4).
        public TimeSpan WorkerWaitOrDefault => WorkerWait ?? ProtocolConfig.WorkerWait;
    }

    /// Id: the sender's identity in StepCommit, EvaluationRound and StateFetch (its path with uid).
    /// DataEndpoint: "host:port" of the worker's gradient data plane, or "" when it has none.
    readonly record struct Member(IActorRef Ref, string Id, string Name, bool Ships, string DataEndpoint);

    /// What a behaviour was doing when a worker was lost: redone with those left (a new generation).
    /// Step: a step was in flight, so it is lost too when no worker is left.
    sealed record InFlight(Action Redo, bool Step);

    readonly Settings _s;
    readonly ITrainingObserver _observer;
    readonly TaskCompletionSource<ClusterOutcome> _done;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Admission _admission;
    readonly JobPlan _job;
    readonly Model _model;
    readonly Optimizer _optimizer;
    readonly StepSamples _samples;
    readonly long _totalSteps;
    readonly LearningRateSchedule _schedule;
    readonly Akka.Cluster.Cluster? _cluster;

    /// The members of the current generation, in ring order.
    readonly List<Member> _workers = [];
    /// Accepted mid-run; brought up to date and added at the next step boundary.
    readonly List<Member> _joiners = [];
    int _generation;
    bool _started;
    long _step;
    /// The coordinator's copy of the model holds the replicas' state after this many steps: where
    /// training restarts if every worker is lost.
    long _syncedStep;
    /// The hash every replica reported after the last committed step.
    string _lastHash;
    StarReducer? _star;
    readonly RunTally _tally = new();
    readonly Stopwatch _stepClock = new(), _epochClock = new();
    string? _interrupt;

    public CoordinatorActor(Settings settings, ITrainingObserver observer, TaskCompletionSource<ClusterOutcome> done)
    {
        _s = settings;
        _observer = observer;
        _done = done;
        _admission = new Admission(settings.JobToken, settings.Data, settings.Plan.GlobalBatch);
        _job = JobPlan.From(settings.Plan, settings.Data, settings.AllReduce);
        if (settings.Resume is { } r)
        {
            _model = r.Model;
            _optimizer = r.Optimizer!;
            _step = r.Step;
        }
        else
        {
            _model = Model.Create(settings.Plan.Model);
            if (settings.InitialParameters is { } initial) initial.CopyTo(_model.Parameters, 0);
            else _model.Initialize(settings.Plan.Seed);
            _optimizer = Optimizer.Create(settings.Plan.Optimizer, _model.ParameterCount);
        }
        _syncedStep = _step;
        _samples = new StepSamples(settings.Plan, settings.Data.Train.Count);
        _totalSteps = settings.Plan.TotalSteps(settings.Data.Train.Count);
        _schedule = settings.Plan.CreateSchedule(settings.Data.Train.Count);
        _lastHash = ParameterHash.ReplicaHex(_model.Parameters);
        if (Context.System is ExtendedActorSystem { Provider: ClusterActorRefProvider }) _cluster = Akka.Cluster.Cluster.Get(Context.System);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(Settings settings, ITrainingObserver observer, TaskCompletionSource<ClusterOutcome> done) =>
        Akka.Actor.Props.Create(() => new CoordinatorActor(settings, observer, done));

    protected override void PreStart()
    {
        _cluster?.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp));
        // A closed connection is the first sign of a worker killed or crashed: see Suspect.
        if (_cluster is not null) Context.System.EventStream.Subscribe(Self, typeof(DisassociatedEvent));
        WaitForWorkers();
    }

    protected override void PostStop()
    {
        _cluster?.Unsubscribe(Self);
        Context.System.EventStream.Unsubscribe(Self);
    }

    sealed class WaitTimeout { public static readonly WaitTimeout Instance = new(); }

    /// Stop cleanly (SIGINT/SIGTERM): at the next step boundary, with a checkpoint of that step.
    public sealed record Interrupt(string Reason);

    sealed class StopGraceOver { public static readonly StopGraceOver Instance = new(); }
    sealed record CheckMember(Address Address);
    /// The probe's answer for the workers (and cluster member) that were at Address when it began:
    /// a worker admitted there since (a restart on a fixed port) is not touched.
    sealed record Probed(Address Address, string Signal, bool Gone, IActorRef[] Suspects, UniqueAddress? Member);

    // ---- Membership (every behaviour; `inFlight` is null while waiting for workers) ----------------

    void Membership(InFlight? inFlight)
    {
        Receive<RegisterWorker>(r => Register(r, waiting: inFlight is null));
        Receive<Terminated>(t => Lost(t.ActorRef, inFlight, ""));
        Receive<DisassociatedEvent>(e => Suspect(e.RemoteAddress, "its connection closed"));
        Receive<Probed>(m =>
        {
            _probing.Remove(m.Address);
            if (!m.Gone) return;   // alive, perhaps busy or frozen: the heartbeat detector decides
            foreach (var w in Admitted.Where(w => m.Suspects.Contains(w.Ref)).ToList())
            {
                Context.Unwatch(w.Ref);
                Lost(w.Ref, inFlight, $" ({m.Signal} and nothing listens at its address any more)");
            }
            // The cluster forgets it now rather than after the failure detector and the downing rule.
            if (m.Member is { } member && _cluster is not null && _cluster.State.Members.Any(x => x.UniqueAddress.Equals(member)))
                _cluster.Down(m.Address);
        });
        Receive<ClusterEvent.MemberUp>(up =>
        {
            if (!up.Member.Address.Equals(_cluster!.SelfAddress))
                Timers.StartSingleTimer(up.Member.Address, new CheckMember(up.Member.Address), _s.AdmissionGraceOrDefault);
        });
        Receive<CheckMember>(m => DownIfStranger(m.Address));
        Receive<Interrupt>(m =>
        {
            _interrupt = m.Reason;
            _tally.End(RunStatus.Interrupted, $"interrupted by {m.Reason}");
            if (inFlight is not null)
            {
                // What is in flight finishes first (RunNextStep), unless it cannot: a frozen worker
                // holds a step until the failure detector notices it, a stuck one for ever.
                Timers.StartSingleTimer("stop-grace", StopGraceOver.Instance, _s.StopGrace);
                return;
            }
            if (_started && _syncedStep > 0) Checkpoint(_syncedStep);
            Finish(fetchState: false);
        });
        Receive<WorkerFailed>(m =>
        {
            var member = Admitted.FirstOrDefault(w => w.Ref.Equals(Sender));
            if (member.Ref is null) { _log.Warning("ignored a failure report from {0}, not a worker of this job", Sender); return; }
            // The same data and model on every replica: what failed on one would fail on the others.
            _tally.BadInput = m.BadInput;
            _tally.End(RunStatus.Failed, $"worker {member.Name} failed: {m.Reason}");
            _observer.Log($"error: worker {member.Name} failed: {m.Reason}");
            if (_started && _syncedStep > 0) Checkpoint(_syncedStep);
            Finish(fetchState: false);
        });
        Receive<WorkerLeaving>(m =>
        {
            if (!Admitted.Any(w => w.Ref.Equals(Sender))) return;
            Context.Unwatch(Sender);
            Lost(Sender, inFlight, $": {m.Reason}");
        });
        Receive<StopGraceOver>(_ =>
        {
            _observer.Log($"warning: the {(inFlight?.Step == true ? "step" : "work")} in flight did not finish within {_s.StopGrace.TotalSeconds:0.#} s of the signal; " +
                          $"stopping without it, with the state of step {_syncedStep}");
            if (_started && _syncedStep > 0) Checkpoint(_syncedStep);
            Finish(fetchState: false);
        });
    }

    IEnumerable<Member> Admitted => _workers.Concat(_joiners);

    void DownIfStranger(Address address)
    {
        if (_cluster is null) return;
        if (!Admission.IsStranger(address, Admitted.Select(w => w.Ref.Path.Address), _cluster.State.Members.Select(m => (m.Address, m.Status)))) return;
        _observer.Log($"removing {address} from the cluster: it joined but no worker there holds the job token");
        _cluster.Down(address);
    }

    void Register(RegisterWorker r, bool waiting)
    {
        bool known = Admitted.Any(w => w.Ref.Equals(Sender));
        if (_admission.Refusal(r, known) is string refusal)
        {
            _observer.Log($"refused worker {r.Name} at {Sender.Path.Address}: {refusal}");
            Sender.Tell(new WorkerRefused(refusal));
            // A refused worker exits; one that stays in the cluster is removed after a grace period.
            if (_cluster is not null) Timers.StartSingleTimer(Sender.Path.Address, new CheckMember(Sender.Path.Address), ProtocolConfig.RefusedMemberGrace);
            return;
        }
        if (known) return;   // a repeated registration
        var member = new Member(Sender, Id(Sender), r.Name, _admission.Ships(r), Admission.DataEndpoint(r, Sender.Path.Address.Host));
        Sender.Tell(new WorkerAccepted(_job, member.Ships));
        Context.Watch(Sender);
        string how = member.Ships ? "samples shipped" : "reads its own copy of the data";
        if (waiting)
        {
            // Nobody trains: the coordinator's copy is the current state.
            SendState(Sender);
            _workers.Add(member);
            _observer.Log($"worker {r.Name} joined ({_workers.Count}/{_s.ExpectedWorkers}, {how})");
            if (_workers.Count == _s.ExpectedWorkers || _started) StartTraining();
        }
        else
        {
            _joiners.Add(member);
            _observer.Log($"worker {r.Name} joined mid-run ({how}); it enters at the next step");
        }
    }

    static string Id(IActorRef r) => r.Path.ToSerializationFormat();

    void SendState(IActorRef worker)
    {
        foreach (var chunk in ModelStateTransfer.Chunks(_model, _optimizer, _generation, _step)) worker.Tell(chunk);
    }

    /// Addresses being probed after a closed connection: one probe each at a time.
    readonly HashSet<Address> _probing = [];

    /// Fast loss detection. A closed Akka.Remote connection to a worker is an immediate signal of
    /// a kill -9 or a crash, where the heartbeat failure detector needs its acceptable pause plus
    /// the downing rule's stable time (about 13 s here). The coordinator holds a connection to
    /// every worker, so any worker process that dies closes one here; a ring neighbour's broken
    /// data-plane link would be the same news later. It is only a signal: a busy but healthy
    /// worker can lose a connection too. So the worker is lost only when a probe confirms that
    /// nothing listens at its address any more.
    void Suspect(Address address, string signal)
    {
        if (address.Host is not { } host || address.Port is not int port) return;
        var suspects = Admitted.Where(w => w.Ref.Path.Address.Equals(address)).Select(w => w.Ref).ToArray();
        if (suspects.Length == 0 || !_probing.Add(address)) return;
        var member = _cluster?.State.Members.FirstOrDefault(m => m.Address.Equals(address))?.UniqueAddress;
        var self = Self;
        LossConfirmation.NothingListensAt(host, port, LossConfirmation.ProbeTimeout)
            .ContinueWith(t => self.Tell(new Probed(address, signal, t.IsCompletedSuccessfully && t.Result, suspects, member)), TaskScheduler.Default);
    }

    /// A worker is gone (watched actor terminated, or a confirmed loss, `how` then saying so).
    void Lost(IActorRef worker, InFlight? inFlight, string how)
    {
        int j = _joiners.FindIndex(w => w.Ref.Equals(worker));
        if (j >= 0)
        {
            _observer.Log($"lost worker {_joiners[j].Name} before it entered{how}");
            _joiners.RemoveAt(j);
            _tally.Failures++;
            return;
        }
        int i = _workers.FindIndex(w => w.Ref.Equals(worker));
        if (i < 0) return;
        var lost = _workers[i];
        _workers.RemoveAt(i);
        if (!_started)
        {
            _observer.Log($"worker {lost.Name} left before training started{how}");
            return;
        }
        _tally.Failures++;
        _observer.Log($"lost worker {lost.Name} at step {_step + 1}{how}; {_workers.Count} left");
        if (_workers.Count == 0) AllLost(stepInFlight: inFlight?.Step ?? false);
        else if (inFlight is not null)
        {
            // No replica keeps a half-applied step: those that applied it roll it back (StartGeneration).
            NewGeneration();
            inFlight.Redo();
        }
    }

    /// Every replica is gone: training restarts from the coordinator's copy once a worker joins.
    void AllLost(bool stepInFlight)
    {
        long lostSteps = _step - _syncedStep + (stepInFlight ? 1 : 0);
        _tally.Redone += lostSteps;
        _step = _syncedStep;
        _tally.EpochStats = _tally.SyncedEpochStats;
        _lastHash = ParameterHash.ReplicaHex(_model.Parameters);
        _observer.Log($"no worker left: training resumes from step {_step} ({lostSteps} step(s) to redo) when a worker joins; " +
                      $"waiting up to {_s.WorkerWaitOrDefault.TotalSeconds:F0}s");
        WaitForWorkers();
        EnterJoiners();
        if (_workers.Count > 0) StartTraining();
    }

    // ---- WaitingForWorkers ---------------------------------------------------------------------

    void WaitForWorkers()
    {
        // A cancelled or restarted timer never delivers its old message (Akka's TimerScheduler).
        Timers.StartSingleTimer("wait", WaitTimeout.Instance, _s.WorkerWaitOrDefault);
        Become(WaitingForWorkers);
    }

    void WaitingForWorkers()
    {
        Membership(inFlight: null);
        Receive<WaitTimeout>(_ =>
        {
            double wait = _s.WorkerWaitOrDefault.TotalSeconds;
            if (_workers.Count > 0)
            {
                _observer.Log($"starting with {_workers.Count} of {_s.ExpectedWorkers} workers after waiting {wait:F0}s");
                StartTraining();
                return;
            }
            _tally.End(RunStatus.Failed, _started ? $"no worker left and none joined within {wait:F0}s (--worker-wait)"
                                          : $"no worker joined within {wait:F0}s (--worker-wait)");
            if (_started && _syncedStep > 0) Checkpoint(_syncedStep);
            Finish(fetchState: false);
        });
    }

    void StartTraining()
    {
        Timers.Cancel("wait");
        _started = true;
        NewGeneration();
        _epochClock.Restart();
        RunNextStep();
    }

    /// A new ring of the current members: older generations' messages are ignored from now on, and
    /// replicas that applied the step in flight roll it back.
    void NewGeneration()
    {
        _generation++;
        var ring = _workers.Select(w => Akka.Serialization.Serialization.SerializedActorPath(w.Ref)).ToArray();
        var endpoints = _workers.Select(w => w.DataEndpoint).ToArray();
        for (int r = 0; r < _workers.Count; r++) _workers[r].Ref.Tell(new StartGeneration(_generation, ring, r, _step, endpoints));
        _star = _s.AllReduce == AllReduceAlgorithm.Star ? new StarReducer(_model.ParameterCount, _workers.Count) : null;
        _observer.Log($"generation {_generation}: {_workers.Count} worker(s) [{string.Join(", ", _workers.Select(w => w.Name))}], {_s.AllReduce.Name()} all-reduce, from step {_step + 1}");
    }

    // ---- Training ------------------------------------------------------------------------------

    /// At a step boundary: finish, bring joiners in, or run the next step.
    void RunNextStep()
    {
        if (_step >= _totalSteps || _interrupt is not null) Finish();
        else if (_joiners.Count > 0) FetchStateThen(AdmitJoiners);
        else DispatchStep();
    }

    /// The joiners get the state just fetched from rank 0 and enter with a new generation.
    void AdmitJoiners()
    {
        EnterJoiners();
        NewGeneration();
        DispatchStep();
    }

    /// Moves the joiners into the ring with the coordinator's copy of the state (current at this point).
    void EnterJoiners()
    {
        foreach (var j in _joiners) { SendState(j.Ref); _workers.Add(j); }
        _joiners.Clear();
    }

    void DispatchStep()
    {
        var assignment = StepWork.Assign(_s.Plan.MicroBatchCount, _workers.Count);
        var step = new StepCommit(_generation, _step, [.. _workers.Select(w => (w.Id, w.Name))]);
        _stepClock.Restart();
        for (int r = 0; r < _workers.Count; r++)
        {
            var (first, count) = assignment[r];
            byte[] pixels = [], labels = [];
            if (_workers[r].Ships) (pixels, labels) = StepWork.Ship(_s.Data.Train, _samples.Of(_step, first, count).Span);
            _workers[r].Ref.Tell(new RunStep(_generation, _step, first, count, pixels, labels));
        }
        Become(() => Training(step));
    }

    void Training(StepCommit step)
    {
        Receive<StepCompleted>(m => { if (step.Add(Id(Sender), m)) Commit(step.Verdict()); });
        Receive<GradientChunk>(OnStarChunk);
        Membership(new InFlight(() => { _tally.Redone++; DispatchStep(); }, Step: true));
    }

    void OnStarChunk(GradientChunk c)
    {
        if (_star is null || c.Generation != _generation || c.Step != _step || !_workers.Any(w => w.Ref.Equals(Sender))) return;
        IReadOnlyList<GradientChunk>? total;
        try { total = _star.Add(Sender.Path.ToString(), c); }
        catch (InvalidChunkException e) { _log.Warning("rejected star chunk from {0}: {1}", Sender, e.Message); return; }
        if (total is null) return;
        foreach (var w in _workers) foreach (var chunk in total) w.Ref.Tell(chunk);
    }

    void Commit(StepVerdict verdict)
    {
        switch (verdict)
        {
            case StepVerdict.Diverged d:
                _tally.End(RunStatus.Diverged, d.Error);
                Finish(fetchState: false);
                return;
            case StepVerdict.Disagreed d:
                _tally.Consistent = false;
                _tally.End(RunStatus.Failed, d.Error);
                Finish(fetchState: false);
                return;
        }
        var c = (StepVerdict.Committed)verdict;
        _lastHash = c.ParameterHash;
        int epoch = _samples.EpochOf(_step);
        _step++;
        double wall = _stepClock.Elapsed.TotalSeconds;
        _tally.Committed(c.Stats, wall);
        var shares = c.Reports.Zip(_workers, (m, w) => new WorkerShare(w.Name, m.Samples, m.ComputeSeconds)).ToArray();
        _observer.StepCompleted(
            new StepReport(_step, _totalSteps, epoch, c.Stats.MeanLoss, c.Stats.Accuracy, _schedule.At(_step - 1), c.Stats.Samples / wall),
            new StepTiming(wall, c.ComputeSeconds, c.ReduceSeconds, shares, c.AllReduceBytes));
        if (_step % _samples.StepsPerEpoch == 0 || _step == _totalSteps) StartEvaluation(epoch);
        else if (_s.CheckpointEverySteps > 0 && _step % _s.CheckpointEverySteps == 0) FetchStateThen(CheckpointAndContinue);
        else RunNextStep();
    }

    void CheckpointAndContinue()
    {
        Checkpoint(_step);
        RunNextStep();
    }

    /// Whether a checkpoint could not be written: the run stops, and no other is attempted.
    bool _checkpointFailed;

    /// Saves the coordinator's state through the observer. A write that fails (a full disk, a folder
    /// taken away) must not throw here: the actor would be restarted and the training state lost.
    /// It ends the run instead (failed, exit 4) after the step in flight, keeping the checkpoints
    /// written before, and the report names the steps done and their parameters' hash.
    void Checkpoint(long step)
    {
        if (_checkpointFailed) return;
        try { _observer.CheckpointDue(_model, _optimizer, step); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _checkpointFailed = true;
            _interrupt ??= "a checkpoint that could not be written";
            // A run already ending for another reason keeps that reason.
            if (_tally.Status == RunStatus.Completed)
                _tally.End(RunStatus.Failed, $"the checkpoint of step {step} could not be written ({e.Message.ReplaceLineEndings(" ")}); the checkpoints written before it are kept");
            _observer.Log($"error: the checkpoint of step {step} could not be written: {e.Message.ReplaceLineEndings(" ")}; stopping after this step");
        }
    }

    // ---- Evaluating ----------------------------------------------------------------------------

    void StartEvaluation(int epoch)
    {
        var test = _s.Data.Test;
        var round = new EvaluationRound(_generation, _step, epoch, test.Count, test.SampleSize, [.. _workers.Select(w => w.Id)]);
        foreach (var (worker, start, count) in round.Pieces)
        {
            byte[] pixels = [], labels = [];
            if (_workers[worker].Ships) (pixels, labels) = StepWork.Ship(test, Enumerable.Range(start, count).ToArray());
            _workers[worker].Ref.Tell(new EvaluateRange(_generation, _step, start, count, pixels, labels));
        }
        Become(() => Evaluating(round));
    }

    void Evaluating(EvaluationRound round)
    {
        Receive<EvaluationCompleted>(m => { if (round.Add(Id(Sender), m)) EpochCompleted(round); });
        Membership(new InFlight(() => StartEvaluation(round.Epoch), Step: false));
    }

    void EpochCompleted(EvaluationRound round)
    {
        double seconds = _epochClock.Elapsed.TotalSeconds;
        var epoch = _tally.EpochEvaluated(round.Total());
        _observer.EpochCompleted(new EpochReport(round.Epoch, _step, epoch, _tally.LastTest, seconds, epoch.Samples / seconds));
        _epochClock.Restart();
        if (_s.CheckpointEveryEpoch && _step < _totalSteps) FetchStateThen(CheckpointAndContinue);
        else RunNextStep();
    }

    // ---- FetchingState -------------------------------------------------------------------------

    /// The one way to "fetch the state, then continue": copies rank 0's parameters and optimizer state
    /// into the coordinator's model, checks them against the replicas' hash, then runs `then`.
    void FetchStateThen(Action then)
    {
        var fetch = new StateFetch(_model, _optimizer, _generation, _workers[0].Id, _lastHash);
        _workers[0].Ref.Tell(new RequestModelState(_generation));
        Become(() => FetchingState(fetch, then));
    }

    void FetchingState(StateFetch fetch, Action then)
    {
        Receive<ModelStateChunk>(m =>
        {
            try { if (!fetch.Add(Id(Sender), m)) return; }
            catch (InvalidDataException e) { _log.Error("rejected model state from {0}: {1}", Sender, e.Message); return; }
            if (!fetch.Matches)
            {
                _tally.Consistent = false;
                _tally.End(RunStatus.Failed, "the parameters fetched from rank 0 do not match the hash all replicas reported");
                Finish(fetchState: false);
                return;
            }
            _syncedStep = _step;
            _tally.SyncedEpochStats = _tally.EpochStats;
            // A finite loss can still leave non-finite parameters after the update (a huge --lr):
            // such a state is neither checkpointed nor reported as a completed run.
            int bad = Array.FindIndex(_model.Parameters, v => !float.IsFinite(v));
            if (bad >= 0)
            {
                _tally.End(RunStatus.Diverged, $"the parameters after step {_step} hold {_model.Parameters[bad]} (index {bad}); lower --lr");
                Finish(fetchState: false);
                return;
            }
            then();
        });
        Membership(new InFlight(() => FetchStateThen(then), Step: false));
    }

    // ---- Finished ------------------------------------------------------------------------------

    void Finish(bool fetchState = true)
    {
        if (fetchState && _workers.Count > 0 && _step > 0)
        {
            FetchStateThen(() => { Checkpoint(_step); Finish(fetchState: false); });
            return;
        }
        foreach (var w in Admitted) w.Ref.Tell(new JobFinished(_tally.Status.Text()));
        // The result is named by SHA-256 of the parameters of the last step, which the coordinator
        // holds once it has fetched and checked them; a run that failed before that (or whose
        // fetched parameters failed the check) has no result to name.
        string sha256 = _tally.Consistent && _syncedStep == _step ? ParameterHash.Sha256Hex(_model.Parameters) : "";
        _done.TrySetResult(_tally.Outcome(_step, sha256, _workers.Count));
        Become(() => ReceiveAny(_ => { }));
    }
}
