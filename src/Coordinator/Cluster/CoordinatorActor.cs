using System.Diagnostics;
using Akka.Actor;
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
/// Phases are behaviours: WaitingForWorkers, Training, Evaluating, Finishing.
public sealed class CoordinatorActor : ReceiveActor
{
    public sealed record Settings(
        TrainingPlan Plan, DatasetFolder Data, string AllReduce, string JobToken, int ExpectedWorkers,
        TrainingCheckpoint? Resume, bool CheckpointEveryEpoch, long CheckpointEverySteps = 0);

    readonly Settings _s;
    readonly ITrainingObserver _observer;
    readonly TaskCompletionSource<ClusterOutcome> _done;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly JobPlan _job;
    readonly Model _model;
    readonly Optimizer _optimizer;
    readonly StepWork _work;
    readonly long _totalSteps;
    readonly LearningRateSchedule _schedule;

    readonly List<(IActorRef Ref, string Name, bool Ships)> _workers = [];
    int _generation;
    long _step;
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
        _work = new StepWork(settings.Plan, settings.Data.Train.Count);
        _totalSteps = settings.Plan.TotalSteps(settings.Data.Train.Count);
        _schedule = settings.Plan.CreateSchedule(settings.Data.Train.Count);
        _lastHash = ParameterHash.Sha256Hex(_model.Parameters);
        WaitingForWorkers();
    }

    public static Props Props(Settings settings, ITrainingObserver observer, TaskCompletionSource<ClusterOutcome> done) =>
        Akka.Actor.Props.Create(() => new CoordinatorActor(settings, observer, done));

    // ---- WaitingForWorkers ---------------------------------------------------------------------

    void WaitingForWorkers()
    {
        Receive<RegisterWorker>(Register);
        Receive<Terminated>(t =>
        {
            int i = _workers.FindIndex(w => w.Ref.Equals(t.ActorRef));
            if (i < 0) return;
            _observer.Log($"worker {_workers[i].Name} left before training started");
            _workers.RemoveAt(i);
        });
    }

    void Register(RegisterWorker r)
    {
        string? refusal =
            r.ProtocolVersion != ProtocolVersion.Current ? $"protocol version {r.ProtocolVersion}, the coordinator speaks {ProtocolVersion.Current}"
            : !TokenEquals(r.JobToken, _s.JobToken) ? "wrong job token"
            : _workers.Any(w => w.Ref.Equals(Sender)) ? null
            : _workers.Count >= _s.ExpectedWorkers ? $"the job already has its {_s.ExpectedWorkers} workers"
            : r.DatasetSha256 != _s.Data.Sha256 && (long)_s.Plan.GlobalBatch * _s.Data.Train.SampleSize > ProtocolConfig.MaxPayloadBytes
                ? $"it has no copy of dataset {_s.Data.Name} ({_s.Data.Sha256[..12]}) and a global batch of {_s.Plan.GlobalBatch} samples is too large to ship; start it with --data"
            : null;
        if (refusal is not null)
        {
            _observer.Log($"refused worker {r.Name} at {Sender.Path.Address}: {refusal}");
            Sender.Tell(new WorkerRefused(refusal));
            return;
        }
        if (_workers.Any(w => w.Ref.Equals(Sender))) return;   // a repeated registration
        bool ships = r.DatasetSha256 != _s.Data.Sha256;
        Sender.Tell(new WorkerAccepted(_job, ships));
        SendState(Sender);
        Context.Watch(Sender);
        _workers.Add((Sender, r.Name, ships));
        _observer.Log($"worker {r.Name} joined ({_workers.Count}/{_s.ExpectedWorkers}){(ships ? ", samples shipped" : ", reads its own copy of the data")}");
        if (_workers.Count == _s.ExpectedWorkers) StartTraining();
    }

    /// Constant-time comparison so the token cannot be guessed byte by byte from response times.
    static bool TokenEquals(string a, string b) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(a), System.Text.Encoding.UTF8.GetBytes(b));

    void SendState(IActorRef worker)
    {
        foreach (var chunk in ModelStateTransfer.Chunks(_model, _optimizer, _generation, _step)) worker.Tell(chunk);
    }

    void StartTraining()
    {
        _generation++;
        var ring = _workers.Select(w => Akka.Serialization.Serialization.SerializedActorPath(w.Ref)).ToArray();
        for (int r = 0; r < _workers.Count; r++) _workers[r].Ref.Tell(new StartGeneration(_generation, ring, r));
        _star = _s.AllReduce == "star" ? new StarReducer(_model.ParameterCount, _workers.Count) : null;
        _observer.Log($"training with {_workers.Count} worker(s), {_s.AllReduce} all-reduce, generation {_generation}");
        _epochClock.Restart();
        Become(Training);
        RunNextStep();
    }

    // ---- Training --------------------------------------------------------------------------------

    void Training()
    {
        Receive<StepCompleted>(OnStepCompleted);
        Receive<GradientChunk>(OnStarChunk);
        Receive<RegisterWorker>(r => Sender.Tell(new WorkerRefused("training has already started")));
        Receive<Terminated>(OnWorkerLost);
    }

    void RunNextStep()
    {
        if (_step >= _totalSteps) { Finish(); return; }
        var assignment = StepWork.Assign(_s.Plan.MicroBatchCount, _workers.Count);
        _pending.Clear();
        _stepClock.Restart();
        for (int r = 0; r < _workers.Count; r++)
        {
            var (first, count) = assignment[r];
            byte[] pixels = [], labels = [];
            if (_workers[r].Ships) (pixels, labels) = Ship(_s.Data.Train, _work.Samples(_step, first, count).Span);
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
        if (all.Select(x => x.ParameterSha256).Distinct().Count() != 1)
        {
            _consistent = false;
            _status = "failed";
            _error = $"replicas disagree after step {_step + 1}: " + string.Join(", ", _pending.Select(p => $"{p.Key.Path.Name}={p.Value.ParameterSha256[..12]}"));
            Finish(fetchState: false);
            return;
        }
        _lastHash = all[0].ParameterSha256;
        int epoch = _work.EpochOf(_step);
        _step++;
        _epochStats += stats;
        _trainedImages += stats.Samples;
        double wall = _stepClock.Elapsed.TotalSeconds;
        _trainSeconds += wall;
        _observer.StepCompleted(
            new StepReport(_step, _totalSteps, epoch, stats.MeanLoss, stats.Accuracy, _schedule.At(_step - 1), stats.Samples / wall),
            new StepTiming(wall, all.Average(x => x.ComputeSeconds), all.Average(x => x.ReduceSeconds)));
        if (_step % _work.StepsPerEpoch == 0 || _step == _totalSteps) StartEvaluation(epoch);
        else if (_s.CheckpointEverySteps > 0 && _step % _s.CheckpointEverySteps == 0)
            FetchState(() => { _observer.CheckpointDue(_model, _optimizer, _step); Become(Training); RunNextStep(); });
        else RunNextStep();
    }

    void OnWorkerLost(Terminated t)
    {
        var lost = _workers.FirstOrDefault(w => w.Ref.Equals(t.ActorRef));
        if (lost.Ref is null) return;
        _status = "failed";
        _error = $"lost worker {lost.Name}; this version cannot continue without it";
        _workers.Remove(lost);
        Finish(fetchState: false);
    }

    // ---- Evaluating ------------------------------------------------------------------------------

    int _evaluatingEpoch;

    void StartEvaluation(int epoch)
    {
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
        Receive<RegisterWorker>(r => Sender.Tell(new WorkerRefused("training has already started")));
        Receive<Terminated>(OnWorkerLost);
    }

    // ---- State transfer and Finishing -------------------------------------------------------------

    /// Copies rank 0's parameters and optimizer state into the coordinator's model, then continues.
    void FetchState(Action then)
    {
        _afterState = then;
        _incoming = new ModelStateTransfer.Assembler(_model, _optimizer);
        _workers[0].Ref.Tell(new RequestModelState(_generation));
        Become(ReceivingState);
    }

    void ReceivingState()
    {
        Receive<ModelStateChunk>(m =>
        {
            if (!Sender.Equals(_workers[0].Ref)) return;
            try { if (!_incoming!.Add(m)) return; }
            catch (InvalidDataException e) { _log.Error("rejected model state from {0}: {1}", Sender, e.Message); return; }
            _incoming = null;
            if (ParameterHash.Sha256Hex(_model.Parameters) != _lastHash)
            {
                _consistent = false;
                _status = "failed";
                _error = "the parameters fetched from rank 0 do not match the hash all replicas reported";
                Finish(fetchState: false);
                return;
            }
            _afterState!();
        });
        Receive<Terminated>(OnWorkerLost);
        Receive<RegisterWorker>(r => Sender.Tell(new WorkerRefused("training has already started")));
    }

    void Finish(bool fetchState = true)
    {
        if (fetchState && _workers.Count > 0 && _step > 0)
        {
            FetchState(() => { _observer.CheckpointDue(_model, _optimizer, _step); Finish(fetchState: false); });
            return;
        }
        foreach (var w in _workers) w.Ref.Tell(new JobFinished(_status));
        _done.TrySetResult(new ClusterOutcome(_status, _error, _step, _lastEpochTrain, _lastTest, _lastHash, _consistent,
            _workers.Count, 0, 0, _trainSeconds, _trainedImages));
        Become(Finished);
    }

    void Finished()
    {
        ReceiveAny(_ => { });
    }
}
