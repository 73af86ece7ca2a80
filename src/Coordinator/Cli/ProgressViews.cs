using System.Globalization;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Reporting;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DistTrain.Coordinator.Cli;

/// How a training run shows itself while it runs: events (joins, losses) as they happen, step
/// progress, and a line per epoch.
public interface IProgressView : IDisposable
{
    void Log(string line);
    /// After every step; a view takes a snapshot of the status only when it shows one.
    void Step(TrainingStatus status);
    void Epoch(EpochReport r, int epochs);

    /// --progress auto: live bars on a terminal, plain lines when the output is a file or a pipe.
    public static IProgressView Create(string mode, TextWriter output, TrainingStatus status)
    {
        bool terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected
                        && Environment.GetEnvironmentVariable("TERM") is not (null or "" or "dumb");
        return mode == "live" || (mode == "auto" && terminal) ? new LiveProgress(status) : new PlainProgress(output);
    }

    internal static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Max(0, Math.Round(seconds)));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";
    }

    internal static string EpochLine(EpochReport r, int epochs) =>
        $"epoch {r.Epoch + 1}/{epochs}  step {r.Step}  train_loss {r.Train.MeanLoss:F4}  train_acc {r.Train.Accuracy:F4}  " +
        $"test_loss {r.Test.MeanLoss:F4}  test_acc {r.Test.Accuracy:F4}  {r.ImagesPerSecond:F0} img/s  {r.Seconds:F1}s";

    internal static string Workers(TrainingStatus.Snapshot s) =>
        string.Join(", ", s.Workers.Select(w => $"{w.Name} {w.ImagesPerSecond.ToString("N0", CultureInfo.InvariantCulture)}"));
}

/// Plain periodic lines with no control characters: for logs, CI and pipes.
public sealed class PlainProgress(TextWriter output, double everySeconds = 10) : IProgressView
{
    readonly System.Diagnostics.Stopwatch _since = System.Diagnostics.Stopwatch.StartNew();

    public void Log(string line) => output.WriteLine(line);

    public void Step(TrainingStatus status)
    {
        if (_since.Elapsed.TotalSeconds < everySeconds && status.LastStep < status.TotalSteps) return;
        _since.Restart();
        var s = status.Take();
        output.WriteLine($"  step {s.Step}/{s.TotalSteps} (epoch {s.Epoch + 1}/{s.Epochs})  loss {s.Loss:F4}  acc {s.Accuracy:F4}  lr {s.LearningRate:G4}  " +
            $"{s.ImagesPerSecond:N0} img/s [{IProgressView.Workers(s)}]" + (s.EtaSeconds is double eta ? $"  ETA {IProgressView.Duration(eta)}" : ""));
    }

    public void Epoch(EpochReport r, int epochs) => output.WriteLine(IProgressView.EpochLine(r, epochs));

    public void Dispose() { }
}

/// Spectre.Console bars on a terminal: the whole run and the current epoch with loss, accuracy,
/// images/s and ETA, a row per worker with its images/s and how busy it is, and events printed
/// above the bars as they happen. Updated from the coordinator's thread; Spectre renders on its own.
public sealed class LiveProgress : IProgressView
{
    readonly TrainingStatus _status;
    readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly Task _render;
    readonly object _lock = new();
    ProgressContext? _context;
    ProgressTask? _run, _epoch;
    int _epochShown = -1;
    readonly Dictionary<string, ProgressTask> _workers = new(StringComparer.Ordinal);
    /// The text at the end of each row; read by Spectre's render thread.
    readonly System.Collections.Concurrent.ConcurrentDictionary<ProgressTask, string> _info = new();

    public LiveProgress(TrainingStatus status)
    {
        _status = status;
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _render = AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 30 }, new PercentageColumn(), new InfoColumn(_info))
            .StartAsync(async context =>
            {
                lock (_lock)
                {
                    _context = context;
                    _run = context.AddTask("run", maxValue: Math.Max(1, status.TotalSteps));
                    _run.Description = $"[bold]{Markup.Escape(status.Model)}[/] steps";
                }
                ready.SetResult();
                await _finished.Task;
            });
        // Spectre refuses to start a second live display in the process; that surfaces here, not as a hang.
        Task.WaitAny(ready.Task, _render);
        if (_render.IsFaulted) _render.GetAwaiter().GetResult();
    }

    public void Log(string line) => AnsiConsole.MarkupLine(Markup.Escape(line));

    /// Spectre redraws about 10 times a second; the bars are updated no more often than that.
    readonly System.Diagnostics.Stopwatch _sinceUpdate = System.Diagnostics.Stopwatch.StartNew();

    public void Step(TrainingStatus status)
    {
        if (_sinceUpdate.ElapsedMilliseconds < 100 && status.LastStep < status.TotalSteps) return;
        _sinceUpdate.Restart();
        var s = status.Take();
        lock (_lock)
        {
            if (_context is null || _run is null) return;
            _run.Value = s.Step;
            _info[_run] = $"loss {s.Loss:F4}  acc {s.Accuracy:F4}  {s.ImagesPerSecond:N0} img/s  ETA {(s.EtaSeconds is double eta ? IProgressView.Duration(eta) : "?")}";
            if (s.Epoch != _epochShown)
            {
                _epoch?.StopTask();
                long perEpoch = Math.Max(1, _status.StepsPerEpoch);
                long first = s.Epoch * perEpoch;
                _epoch = _context.AddTask($"epoch {s.Epoch + 1}/{s.Epochs}", maxValue: Math.Min(perEpoch, s.TotalSteps - first));
                _epoch.State.Update<long>("first", _ => first);
                _epochShown = s.Epoch;
            }
            _epoch!.Value = s.Step - _epoch.State.Get<long>("first");
            _info[_epoch] = double.IsFinite(s.TestAccuracy) ? $"last test acc {s.TestAccuracy:F4}" : "";

            foreach (var w in s.Workers)
            {
                if (!_workers.TryGetValue(w.Name, out var row))
                    _workers[w.Name] = row = _context.AddTask($"  worker {Markup.Escape(w.Name)} busy", maxValue: 1);
                row.Value = w.Busy;
                _info[row] = $"{w.ImagesPerSecond:N0} img/s";
            }
            foreach (var gone in _workers.Keys.Where(k => s.Workers.All(w => w.Name != k)).ToList())
            {
                _workers[gone].Description = $"  [red]worker {Markup.Escape(gone)} lost[/]";
                _info[_workers[gone]] = "";
                _workers[gone].StopTask();
                _workers.Remove(gone);
            }
        }
    }

    public void Epoch(EpochReport r, int epochs) => Log(IProgressView.EpochLine(r, epochs));

    public void Dispose()
    {
        lock (_lock) { _run?.StopTask(); _epoch?.StopTask(); }
        _finished.TrySetResult();
        _render.Wait(TimeSpan.FromSeconds(5));
    }

    /// The text of each row after its percentage.
    sealed class InfoColumn(System.Collections.Concurrent.ConcurrentDictionary<ProgressTask, string> info) : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text(info.TryGetValue(task, out var text) ? text : "");
    }
}

/// --log-format json: the step progress every 10 s and a line per epoch as log entries whose
/// figures are fields of their own (step, loss, test_accuracy, ...), and events at their level.
public sealed class LogProgress(Microsoft.Extensions.Logging.ILogger logger, double everySeconds = 10) : IProgressView
{
    readonly System.Diagnostics.Stopwatch _since = System.Diagnostics.Stopwatch.StartNew();
    readonly LoggingTextWriter _lines = new(logger);

    public void Log(string line) => _lines.WriteLine(line);

    public void Step(TrainingStatus status)
    {
        if (_since.Elapsed.TotalSeconds < everySeconds && status.LastStep < status.TotalSteps) return;
        _since.Restart();
        var s = status.Take();
        Microsoft.Extensions.Logging.LoggerExtensions.LogInformation(logger,
            "step {step}/{total_steps} epoch {epoch}/{epochs} loss {loss} accuracy {accuracy} learning_rate {learning_rate} images_per_second {images_per_second} eta_seconds {eta_seconds}",
            s.Step, s.TotalSteps, s.Epoch + 1, s.Epochs, s.Loss, s.Accuracy, s.LearningRate, Math.Round(s.ImagesPerSecond, 1), s.EtaSeconds);
    }

    public void Epoch(EpochReport r, int epochs) =>
        Microsoft.Extensions.Logging.LoggerExtensions.LogInformation(logger,
            "epoch {epoch}/{epochs} step {step} train_loss {train_loss} train_accuracy {train_accuracy} test_loss {test_loss} test_accuracy {test_accuracy} images_per_second {images_per_second} seconds {seconds}",
            r.Epoch + 1, epochs, r.Step, r.Train.MeanLoss, r.Train.Accuracy, r.Test.MeanLoss, r.Test.Accuracy, Math.Round(r.ImagesPerSecond, 1), Math.Round(r.Seconds, 3));

    public void Dispose() { }
}
