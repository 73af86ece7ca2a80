using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker;
using DistTrain.Worker.Collectives;

namespace DistTrain.Coordinator.Cluster;

/// Orchestrates synchronous data-parallel training: admits workers, cuts each global batch into
/// micro-batch runs in ring order, checks after every step that all replicas hold the same
/// parameters, shares evaluation, and fetches the state for checkpoints and the final report.
/// Phases are behaviours: WaitingForWorkers, Training, Evaluating, ReceivingState, Finished.
/// Membership changes start a new generation: a lost worker's step in flight is redone by the live
/// workers, joiners receive the current state and enter at the next step, and with no worker left
/// training restarts from the coordinator's last copy of the state when one joins.
public sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public sealed record Settings(
        TrainingPlan Plan, DatasetFolder Data, AllReduceAlgorithm AllReduce, string JobToken, int ExpectedWorkers,
        TrainingCheckpoint? Resume, bool CheckpointEveryEpoch, long CheckpointEverySteps = 0, TimeSpan? WorkerWait = null,
        TimeSpan? AdmissionGrace = null)
    {
        /// A cluster member with no admitted worker after this long is downed.
        public TimeSpan AdmissionGraceOrDefault => AdmissionGrace ?? TimeSpan.FromSeconds(20);

        /// How long to wait for workers: for the job's workers at the start, and for a replacement
        /// when none is left. Then training starts with those present, or the run fails (exit 4).
        public TimeSpan WorkerWaitOrDefault => WorkerWait ?? TimeSpan.FromSeconds(60);
    }

    /// DataEndpoint: "host:port" of the worker's gradient data plane, or "" when it has none.
    readonly record struct Member(IActorRef Ref, string Name, bool Ships, string DataEndpoint = "");

    /// What the current generation is doing: what a lost worker interrupts and what is redone.
    enum Phase { Waiting, Step, Evaluation, State }

    readonly Settings _s;
    readonly ITrainingObserver _observer;
    readonly TaskCompletionSource<ClusterOutcome> _done;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly JobPlan _job;
    readonly Model _model;
    readonly Optimizer _optimizer;
    readonly StepSamples _work;
    readonly long _totalSteps;
    readonly LearningRateSchedule _schedule;
    readonly Akka.Cluster.Cluster? _cluster;

    /// The members of the current generation, in ring order.
    readonly List<Member> _workers = [];
    /// Accepted mid-run; brought up to date and added at the next step boundary.
    readonly List<Member> _joiners = [];
    int _generation;
    Phase _phase = Phase.Waiting;
    bool _started;
    long _step;
    /// The coordinator's copy of the model holds the replicas' state after this many steps: where
    /// training restarts if every worker is lost.
    long _syncedStep;
    BatchStats _syncedEpochStats;
    int _failures;
    long _redone;
    readonly Dictionary<IActorRef, StepCompleted> _pending = [];
    readonly SortedDictionary<int, EvaluationCompleted> _evaluations = [];
    int _evaluationPieces;
    StarReducer? _star;
    readonly Stopwatch _stepClock = new();
    /// Time spent in steps (dispatch to the last StepCompleted), not in evaluation or state transfer.
    double _trainSeconds;
    BatchStats _epochStats, _lastEpochTrain, _lastTest;
    readonly Stopwatch _epochClock = new();
    long _trainedImages;
    string _lastHash = "";
    bool _consistent = true;
    ModelStateTransfer.Assembler? _incoming;
    Action? _afterState;
    string _status = "completed";
    string? _error;

    public CoordinatorActor(Settings settings, ITrainingObserver observer, TaskCompletionSource<ClusterOutcome> done)
    {
        _s = settings;
        _observer = observer;
        _done = done;
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
            _model.Initialize(settings.Plan.Seed);
            _optimizer = Optimizer.Create(settings.Plan.Optimizer, _model.ParameterCount);
        }
        _syncedStep = _step;
        _work = new StepSamples(settings.Plan, settings.Data.Train.Count);
        _totalSteps = settings.Plan.TotalSteps(settings.Data.Train.Count);
        _schedule = settings.Plan.CreateSchedule(settings.Data.Train.Count);
        _lastHash = ParameterHash.ReplicaHex(_model.Parameters);
        if (Context.System is ExtendedActorSystem { Provider: Akka.Cluster.ClusterActorRefProvider }) _cluster = Akka.Cluster.Cluster.Get(Context.System);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(Settings settings, ITrainingObserver observer, TaskCompletionSource<ClusterOutcome> done) =>
        Akka.Actor.Props.Create(() => new CoordinatorActor(settings, observer, done));

    protected override void PreStart()
    {
        _cluster?.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp));
        WaitForWorkers();
    }

    protected override void PostStop() => _cluster?.Unsubscribe(Self);

    sealed class WaitTimeout { public static readonly WaitTimeout Instance = new(); }

    /// Stop cleanly (SIGINT/SIGTERM): at the next step boundary, with a checkpoint of that step.
    public sealed record Interrupt(string Reason);
    string? _interrupt;
    sealed record CheckMember(Address Address);

    // ---- Membership (every phase) -----------------------------------------------------------------

    void Membership()
    {
        Receive<RegisterWorker>(Register);
        Receive<Terminated>(OnTerminated);
        Receive<ClusterEvent.MemberUp>(up =>
        {
            if (!up.Member.Address.Equals(_cluster!.SelfAddress))
                Timers.StartSingleTimer(up.Member.Address, new CheckMember(up.Member.Address), _s.AdmissionGraceOrDefault);
        });
        Receive<CheckMember>(m => DownIfStranger(m.Address));
        Receive<Interrupt>(m =>
        {
            _interrupt = m.Reason;
            _status = "interrupted";
            _error = $"interrupted by {m.Reason}";
            if (_phase != Phase.Waiting) return;   // the step in flight finishes first (RunNextStep)
            if (_started && _syncedStep > 0) _observer.CheckpointDue(_model, _optimizer, _syncedStep);
            Finish(fetchState: false);
        });
    }

    bool IsMember(IActorRef r) => _workers.Any(w => w.Ref.Equals(r)) || _joiners.Any(w => w.Ref.Equals(r));

    /// Closes the membership-before-token gap: honest workers join the cluster only after their token
    /// is accepted, but Akka.Cluster lets any node that reaches the seed join; a member with no
    /// admitted worker is downed (removed) after a grace period.
    void DownIfStranger(Address address)
    {
        if (_cluster is null || _workers.Concat(_joiners).Any(w => w.Ref.Path.Address.Equals(address))) return;
        if (!_cluster.State.Members.Any(m => m.Address.Equals(address) && m.Status is not (MemberStatus.Down or MemberStatus.Removed or MemberStatus.Exiting))) return;
        _observer.Log($"removing {address} from the cluster: it joined but no worker there holds the job token");
        _cluster.Down(address);
    }

    void Register(RegisterWorker r)
    {
        bool known = IsMember(Sender);
        string? refusal =
            r.ProtocolVersion != ProtocolVersion.Current ? $"protocol version {r.ProtocolVersion}, the coordinator speaks {ProtocolVersion.Current}"
            : !TokenEquals(r.JobToken, _s.JobToken) ? "wrong job token"
            : known ? null
            : r.DatasetSha256.Length > 0 && r.DatasetSha256 != _s.Data.Sha256
                ? $"its --data is another dataset (sha256 {Short(r.DatasetSha256)}) than the job's {_s.Data.Name} ({_s.Data.Sha256[..12]}); " +
                  "give it the job's data, or no --data to have samples shipped"
            : r.DatasetSha256 != _s.Data.Sha256 && (long)_s.Plan.GlobalBatch * _s.Data.Train.SampleSize > ProtocolConfig.MaxPayloadBytes
                ? $"it has no copy of dataset {_s.Data.Name} ({_s.Data.Sha256[..12]}) and a global batch of {_s.Plan.GlobalBatch} samples is too large to ship; start it with --data"
            : null;
        if (refusal is not null)
        {
            _observer.Log($"refused worker {r.Name} at {Sender.Path.Address}: {refusal}");
            Sender.Tell(new WorkerRefused(refusal));
            // A refused worker exits; one that stays in the cluster is removed after a grace period.
            if (_cluster is not null) Timers.StartSingleTimer(Sender.Path.Address, new CheckMember(Sender.Path.Address), TimeSpan.FromSeconds(5));
            return;
        }
        if (known) return;   // a repeated registration
        bool ships = r.DatasetSha256 != _s.Data.Sha256;
        string dataEndpoint = r.DataPort is > 0 and <= 65535 && Sender.Path.Address.Host is string dataHost ? $"{dataHost}:{r.DataPort}" : "";
        var member = new Member(Sender, r.Name, ships, dataEndpoint);
        Sender.Tell(new WorkerAccepted(_job, ships));
        Context.Watch(Sender);
        string how = ships ? "samples shipped" : "reads its own copy of the data";
        if (_phase == Phase.Waiting)
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

    static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;

    /// Constant-time comparison so the token cannot be guessed byte by byte from response times.
    static bool TokenEquals(string a, string b) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(a), System.Text.Encoding.UTF8.GetBytes(b));

    void SendState(IActorRef worker)
    {
        foreach (var chunk in ModelStateTransfer.Chunks(_model, _optimizer, _generation, _step)) worker.Tell(chunk);
    }

    void OnTerminated(Terminated t)
    {
        int j = _joiners.FindIndex(w => w.Ref.Equals(t.ActorRef));
        if (j >= 0)
        {
            _observer.Log($"lost worker {_joiners[j].Name} before it entered");
            _joiners.RemoveAt(j);
            _failures++;
            return;
        }
        int i = _workers.FindIndex(w => w.Ref.Equals(t.ActorRef));
        if (i < 0) return;
        var lost = _workers[i];
        _workers.RemoveAt(i);
        if (!_started)
        {
            _observer.Log($"worker {lost.Name} left before training started");
            return;
        }
        _failures++;
        _observer.Log($"lost worker {lost.Name} at step {_step + 1}; {_workers.Count} left");
        if (_workers.Count == 0) { AllLost(); return; }
        switch (_phase)
        {
            case Phase.Step:
                // No replica keeps a half-applied step: those that applied it roll it back (StartGeneration).
                _redone++;
                NewGeneration();
                Become(Training);
                DispatchStep();
                break;
            case Phase.Evaluation:
                NewGeneration();
                StartEvaluation(_evaluatingEpoch);
                break;
            case Phase.State:
                NewGeneration();
                FetchState(_afterState!);
                break;
        }
    }

    /// Every replica is gone: training restarts from the coordinator's copy once a worker joins.
    void AllLost()
    {
        long lostSteps = _step - _syncedStep + (_phase == Phase.Step ? 1 : 0);
        _redone += lostSteps;
        _step = _syncedStep;
        _epochStats = _syncedEpochStats;
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
        _phase = Phase.Waiting;
        // A cancelled or restarted timer never delivers its old message (Akka's TimerScheduler).
        Timers.StartSingleTimer("wait", WaitTimeout.Instance, _s.WorkerWaitOrDefault);
        Become(() =>
        {
            Membership();
            Receive<WaitTimeout>(_ =>
            {
                if (_workers.Count > 0)
                {
                    _observer.Log($"starting with {_workers.Count} of {_s.ExpectedWorkers} workers after waiting {_s.WorkerWaitOrDefault.TotalSeconds:F0}s");
                    StartTraining();
                    return;
                }
                _status = "failed";
                _error = _started
                    ? $"no worker left and none joined within {_s.WorkerWaitOrDefault.TotalSeconds:F0}s (--worker-wait)"
                    : $"no worker joined within {_s.WorkerWaitOrDefault.TotalSeconds:F0}s (--worker-wait)";
                if (_started && _syncedStep > 0) _observer.CheckpointDue(_model, _optimizer, _syncedStep);
                Finish(fetchState: false);
            });
        });
    }

    void StartTraining()
    {
        Timers.Cancel("wait");
        _started = true;
        NewGeneration();
        _epochClock.Restart();
        Become(Training);
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

    // ---- Training --------------------------------------------------------------------------------

    void Training()
    {
        Receive<StepCompleted>(OnStepCompleted);
        Receive<GradientChunk>(OnStarChunk);
        Membership();
    }

    void RunNextStep()
    {
        if (_step >= _totalSteps || _interrupt is not null) { Finish(); return; }
        if (_joiners.Count > 0) { FetchState(AdmitJoiners); return; }
        DispatchStep();
    }

    /// The joiners get the state just fetched from rank 0 and enter with a new generation.
    void AdmitJoiners()
    {
        EnterJoiners();
        NewGeneration();
        Become(Training);
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
        _phase = Phase.Step;
        var assignment = StepWork.Assign(_s.Plan.MicroBatchCount, _workers.Count);
        _pending.Clear();
        _stepClock.Restart();
        for (int r = 0; r < _workers.Count; r++)
        {
            var (first, count) = assignment[r];
            byte[] pixels = [], labels = [];
            if (_workers[r].Ships) (pixels, labels) = Ship(_s.Data.Train, _work.Of(_step, first, count).Span);
            _workers[r].Ref.Tell(new RunStep(_generation, _step, first, count, pixels, labels));
        }
    }

    static (byte[] Pixels, byte[] Labels) Ship(Dataset data, ReadOnlySpan<int> ids)
    {
        var pixels = new byte[ids.Length * data.SampleSize];
        var labels = new byte[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            data.Pixels.Slice(ids[i] * data.SampleSize, data.SampleSize).CopyTo(pixels.AsSpan(i * data.SampleSize));
            labels[i] = data.Label(ids[i]);
        }
        return (pixels, labels);
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

    void OnStepCompleted(StepCompleted m)
    {
        // Invariant 4: only the current generation's current step, from a member, counts.
        if (m.Generation != _generation || m.Step != _step || !_workers.Any(w => w.Ref.Equals(Sender)) || _pending.ContainsKey(Sender)) return;
        _pending[Sender] = m;
        if (_pending.Count < _workers.Count) return;

        var all = _pending.Values.ToList();
        var stats = new BatchStats(all.Sum(x => x.LossSum), all.Sum(x => x.Correct), all.Sum(x => x.Samples));
        if (all.Any(x => x.Diverged) || !double.IsFinite(stats.LossSum))
        {
            _status = "diverged";
            _error = $"training diverged at step {_step + 1}: loss is {stats.MeanLoss}; lower --lr";
            Finish(fetchState: false);
            return;
        }
        if (all.Select(x => x.ParameterHash).Distinct().Count() != 1)
        {
            _consistent = false;
            _status = "failed";
            _error = $"replicas disagree after step {_step + 1}: " + string.Join(", ", _pending.Select(p => $"{p.Key.Path.Name}={p.Value.ParameterHash[..Math.Min(12, p.Value.ParameterHash.Length)]}"));
            Finish(fetchState: false);
            return;
        }
        _lastHash = all[0].ParameterHash;
        int epoch = _work.EpochOf(_step);
        _step++;
        _epochStats += stats;
        _trainedImages += stats.Samples;
        double wall = _stepClock.Elapsed.TotalSeconds;
        _trainSeconds += wall;
        _observer.StepCompleted(
            new StepReport(_step, _totalSteps, epoch, stats.MeanLoss, stats.Accuracy, _schedule.At(_step - 1), stats.Samples / wall),
            new StepTiming(wall, all.Average(x => x.ComputeSeconds), all.Average(x => x.ReduceSeconds),
                           _workers.Select(w => _pending[w.Ref]).Zip(_workers, (m, w) => new WorkerShare(w.Name, m.Samples, m.ComputeSeconds)).ToArray()));
        if (_step % _work.StepsPerEpoch == 0 || _step == _totalSteps) StartEvaluation(epoch);
        else if (_s.CheckpointEverySteps > 0 && _step % _s.CheckpointEverySteps == 0)
            FetchState(() => { _observer.CheckpointDue(_model, _optimizer, _step); Become(Training); RunNextStep(); });
        else RunNextStep();
    }

    // ---- Evaluating ------------------------------------------------------------------------------

    int _evaluatingEpoch;

    void StartEvaluation(int epoch)
    {
        _phase = Phase.Evaluation;
        _evaluatingEpoch = epoch;
        _evaluations.Clear();
        var test = _s.Data.Test;
        var pieces = StepWork.EvaluationPieces(test.Count, test.SampleSize, _workers.Count, ProtocolConfig.MaxPayloadBytes);
        _evaluationPieces = pieces.Count;
        foreach (var (worker, start, count) in pieces)
        {
            byte[] pixels = [], labels = [];
            if (_workers[worker].Ships) (pixels, labels) = Ship(test, Enumerable.Range(start, count).ToArray());
            _workers[worker].Ref.Tell(new EvaluateRange(_generation, _step, start, count, pixels, labels));
        }
        Become(Evaluating);
    }

    void Evaluating()
    {
        Receive<EvaluationCompleted>(m =>
        {
            if (m.Generation != _generation || m.Step != _step || !_workers.Any(w => w.Ref.Equals(Sender))) return;
            _evaluations[m.Start] = m;
            if (_evaluations.Count < _evaluationPieces) return;
            var all = _evaluations.Values;   // summed in test-set order, so the loss is the same for any worker count
            _lastTest = new BatchStats(all.Sum(x => x.LossSum), all.Sum(x => x.Correct), all.Sum(x => x.Samples));
            _lastEpochTrain = _epochStats;
            double seconds = _epochClock.Elapsed.TotalSeconds;
            _observer.EpochCompleted(new EpochReport(_evaluatingEpoch, _step, _epochStats, _lastTest, seconds, _epochStats.Samples / seconds));
            _epochStats = new BatchStats();
            _epochClock.Restart();
            if (_s.CheckpointEveryEpoch && _step < _totalSteps)
                FetchState(() => { _observer.CheckpointDue(_model, _optimizer, _step); Become(Training); RunNextStep(); });
            else { Become(Training); RunNextStep(); }
        });
        Membership();
    }

    // ---- State transfer and Finishing -------------------------------------------------------------

    /// Copies rank 0's parameters and optimizer state into the coordinator's model, then continues.
    void FetchState(Action then)
    {
        _phase = Phase.State;
        _afterState = then;
        _incoming = new ModelStateTransfer.Assembler(_model, _optimizer);
        _workers[0].Ref.Tell(new RequestModelState(_generation));
        Become(ReceivingState);
    }

    void ReceivingState()
    {
        Receive<ModelStateChunk>(m =>
        {
            if (m.Generation != _generation || !Sender.Equals(_workers[0].Ref)) return;
            try { if (!_incoming!.Add(m)) return; }
            catch (InvalidDataException e) { _log.Error("rejected model state from {0}: {1}", Sender, e.Message); return; }
            _incoming = null;
            if (ParameterHash.ReplicaHex(_model.Parameters) != _lastHash)
            {
                _consistent = false;
                _status = "failed";
                _error = "the parameters fetched from rank 0 do not match the hash all replicas reported";
                Finish(fetchState: false);
                return;
            }
            _syncedStep = _step;
            _syncedEpochStats = _epochStats;
            _afterState!();
        });
        Membership();
    }

    void Finish(bool fetchState = true)
    {
        if (fetchState && _workers.Count > 0 && _step > 0)
        {
            FetchState(() => { _observer.CheckpointDue(_model, _optimizer, _step); Finish(fetchState: false); });
            return;
        }
        foreach (var w in _workers.Concat(_joiners)) w.Ref.Tell(new JobFinished(_status));
        // The result is named by SHA-256 of the parameters of the last step, which the coordinator
        // holds once it has fetched and checked them; a run that failed before that (or whose
        // fetched parameters failed the check) has no result to name.
        string sha256 = _consistent && _syncedStep == _step ? ParameterHash.Sha256Hex(_model.Parameters) : "";
        _done.TrySetResult(new ClusterOutcome(_status, _error, _step, _lastEpochTrain, _lastTest, sha256, _consistent,
            _workers.Count, _failures, _redone, _trainSeconds, _trainedImages));
        Become(Finished);
    }

    void Finished()
    {
        ReceiveAny(_ => { });
    }
}
