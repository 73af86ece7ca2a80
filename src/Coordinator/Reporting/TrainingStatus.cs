using System.Globalization;
using System.Text;
using System.Text.Json;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;

namespace DistTrain.Coordinator.Reporting;

/// The run as it stands, for the progress display and the --status-port endpoint. Written by the
/// coordinator's observer, read from other threads: every access takes the lock and readers get a copy.
public sealed class TrainingStatus(string model, int epochs, long totalSteps, long stepsPerEpoch)
{
    /// Images/s are measured over the most recent steps: the rate a user sees now, not since start.
    const int Window = 50;

    readonly object _lock = new();
    readonly DateTime _started = DateTime.UtcNow;
    readonly RateWindow _recent = new();
    readonly Dictionary<string, RateWindow> _workers = new(StringComparer.Ordinal);
    readonly List<string> _events = [];
    string _state = "starting";
    long _step;
    int _epoch;
    double _loss = double.NaN, _accuracy = double.NaN, _lr, _testLoss = double.NaN, _testAccuracy = double.NaN;
    double _trainSeconds;
    long _trainedImages;
    int _joins, _losses;
    readonly List<StepPoint> _steps = [];
    readonly List<EpochPoint> _epochs = [];

    /// The run's Prometheus metrics, kept up to date with this status.
    public RunMetrics Metrics { get; } = new(totalSteps);

    public string Model => model;
    public int Epochs => epochs;
    public long TotalSteps => totalSteps;
    public long StepsPerEpoch => stepsPerEpoch;
    /// The newest step completed (cheap: no snapshot).
    public long LastStep { get { lock (_lock) return _step; } }

    public void Step(StepReport r, StepTiming t)
    {
        lock (_lock)
        {
            _state = "training";
            _step = r.Step; _epoch = r.Epoch; _loss = r.Loss; _accuracy = r.Accuracy; _lr = r.LearningRate;
            long images = t.Workers.Sum(w => w.Samples);
            _trainSeconds += t.WallSeconds; _trainedImages += images;
            _recent.Add(images, t.WallSeconds, t.ComputeSeconds);
            foreach (var w in _workers.Values) w.Present = false;
            foreach (var w in t.Workers)
            {
                if (!_workers.TryGetValue(w.Name, out var rate)) _workers[w.Name] = rate = new RateWindow();
                rate.Add(w.Samples, t.WallSeconds, w.ComputeSeconds);
            }
            foreach (var gone in _workers.Where(p => !p.Value.Present).Select(p => p.Key).ToList()) _workers.Remove(gone);
            double wall = Math.Max(t.WallSeconds, 1e-9);
            _steps.Add(new StepPoint(r.Step, r.Loss, r.Accuracy, images / wall, Math.Min(1, t.ComputeSeconds / wall), Math.Min(1, t.ReduceSeconds / wall)));
            Metrics.Step(r.Step, r.Epoch, r.Loss, r.Accuracy, r.LearningRate, t.WallSeconds, t.ComputeSeconds, t.ReduceSeconds, t.AllReduceBytes,
                         [.. t.Workers.Select(w => (w.Name, w.Samples, w.ComputeSeconds))]);
            Metrics.Rates(_recent.ImagesPerSecond, [.. _workers.Select(p => (p.Key, p.Value.ImagesPerSecond, p.Value.Busy))]);
        }
    }

    public void Epoch(EpochReport r)
    {
        lock (_lock)
        {
            _testLoss = r.Test.MeanLoss; _testAccuracy = r.Test.Accuracy;
            _epochs.Add(new EpochPoint(r.Epoch + 1, r.Step, r.Train.MeanLoss, r.Train.Accuracy, r.Test.MeanLoss, r.Test.Accuracy));
            Metrics.Epoch(r.Test.MeanLoss, r.Test.Accuracy);
        }
    }

    public void Event(string line)
    {
        lock (_lock)
        {
            if (line.Contains(" joined", StringComparison.Ordinal) && line.StartsWith("worker ", StringComparison.Ordinal)) { _joins++; Metrics.Joined(); }
            if (line.StartsWith("lost worker ", StringComparison.Ordinal)) { _losses++; Metrics.Lost(); }
            _events.Add($"{DateTime.UtcNow:HH:mm:ss} {line.Trim()}");
            if (_events.Count > 20) _events.RemoveAt(0);
        }
    }

    public void Finish(string state)
    {
        lock (_lock) { _state = state; Metrics.Finished(); }
    }

    /// One step as the dashboard draws it: loss and accuracy, images/s, and the shares of the step
    /// spent computing and all-reducing.
    public readonly record struct StepPoint(long Step, double Loss, double Accuracy, double ImagesPerSecond, double Compute, double Reduce);

    public readonly record struct EpochPoint(int Epoch, long Step, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy);

    /// The steps and epochs after the first `steps` and `epochs` already seen.
    public (StepPoint[] Steps, EpochPoint[] Epochs) HistorySince(int steps, int epochs)
    {
        lock (_lock)
            return ([.. _steps.Skip(Math.Max(0, steps))], [.. _epochs.Skip(Math.Max(0, epochs))]);
    }

    public Snapshot Take()
    {
        lock (_lock)
        {
            double rate = _recent.ImagesPerSecond;
            double stepsPerSecond = _recent.StepsPerSecond;
            double? eta = stepsPerSecond > 0 && _state == "training" ? (totalSteps - _step) / stepsPerSecond : null;
            return new Snapshot(_state, model, _step, totalSteps, _epoch, epochs, _loss, _accuracy, _lr, _testLoss, _testAccuracy,
                rate, _trainSeconds > 0 ? _trainedImages / _trainSeconds : 0, eta, (DateTime.UtcNow - _started).TotalSeconds,
                _workers.Select(p => new WorkerSnapshot(p.Key, p.Value.ImagesPerSecond, p.Value.Busy)).OrderBy(w => w.Name, StringComparer.Ordinal).ToArray(),
                _joins, _losses, _events.ToArray());
        }
    }

    /// Images, wall and compute seconds of the last Window steps (of the run, or of one worker).
    sealed class RateWindow
    {
        readonly Queue<(long Images, double Wall, double Compute)> _recent = new();
        long _images; double _wall, _compute;
        public bool Present;
        public double ImagesPerSecond => _wall > 0 ? _images / _wall : 0;
        public double StepsPerSecond => _wall > 0 ? _recent.Count / _wall : 0;
        public double Busy => _wall > 0 ? Math.Min(1, _compute / _wall) : 0;

        public void Add(long images, double wall, double compute)
        {
            Present = true;
            _recent.Enqueue((images, wall, compute)); _images += images; _wall += wall; _compute += compute;
            if (_recent.Count > Window) { var o = _recent.Dequeue(); _images -= o.Images; _wall -= o.Wall; _compute -= o.Compute; }
        }
    }

    public sealed record WorkerSnapshot(string Name, double ImagesPerSecond, double Busy);

    public sealed record Snapshot(
        string State, string Model, long Step, long TotalSteps, int Epoch, int Epochs, double Loss, double Accuracy, double LearningRate,
        double TestLoss, double TestAccuracy, double ImagesPerSecond, double MeanImagesPerSecond, double? EtaSeconds, double ElapsedSeconds,
        WorkerSnapshot[] Workers, int WorkerJoins, int WorkerLosses, string[] Events)
    {
        /// GET /status (indented); on one line for the dashboard's server-sent events, whose data
        /// may not hold a line break.
        public string ToJson(bool indented = true)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented }))
            {
                w.WriteStartObject();
                w.WriteString("state", State);
                w.WriteString("model", Model);
                w.WriteNumber("step", Step);
                w.WriteNumber("total_steps", TotalSteps);
                w.WriteNumber("epoch", Epoch + 1);
                w.WriteNumber("epochs", Epochs);
                Number(w, "loss", Loss);
                Number(w, "accuracy", Accuracy);
                Number(w, "learning_rate", LearningRate);
                Number(w, "test_loss", TestLoss);
                Number(w, "test_accuracy", TestAccuracy);
                w.WriteNumber("images_per_second", Math.Round(ImagesPerSecond, 1));
                w.WriteNumber("mean_images_per_second", Math.Round(MeanImagesPerSecond, 1));
                if (EtaSeconds is double eta) w.WriteNumber("eta_seconds", Math.Round(eta, 1)); else w.WriteNull("eta_seconds");
                w.WriteNumber("elapsed_seconds", Math.Round(ElapsedSeconds, 1));
                w.WriteNumber("worker_joins", WorkerJoins);
                w.WriteNumber("worker_losses", WorkerLosses);
                w.WriteStartArray("workers");
                foreach (var x in Workers)
                {
                    w.WriteStartObject();
                    w.WriteString("name", x.Name);
                    w.WriteNumber("images_per_second", Math.Round(x.ImagesPerSecond, 1));
                    w.WriteNumber("busy", Math.Round(x.Busy, 3));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("events");
                foreach (var e in Events) w.WriteStringValue(e);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(buffer.ToArray());
        }

        static void Number(Utf8JsonWriter w, string name, double v)
        {
            if (double.IsFinite(v)) w.WriteNumber(name, v); else w.WriteNull(name);
        }

    }
}
