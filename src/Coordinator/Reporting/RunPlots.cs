using System.Text.Json;
using ScottPlot;

namespace DistTrain.Coordinator.Reporting;

/// Loss and accuracy curves (PNG) drawn from a --metrics JSONL file: the training loss of every
/// step with its moving average, the epoch means, and the test loss after each epoch, against the
/// step, with a line at each epoch boundary. A step written twice (a redone step after a resume or
/// a total loss) is drawn once, with its last value.
public static class RunPlots
{
    public sealed record Written(string LossPng, string AccuracyPng, int Steps, int Epochs);

    /// Writes PREFIX-loss.png and PREFIX-accuracy.png. A malformed line is a one-line error naming
    /// the file and the line.
    public static Written Write(string metricsPath, string prefix)
    {
        var (steps, epochs) = Read(metricsPath);
        if (steps.Count == 0 && epochs.Count == 0) throw new BadInputException($"{metricsPath}: no step or epoch metrics to plot");
        var dir = Path.GetDirectoryName(Path.GetFullPath(prefix));
        if (dir is not null) Directory.CreateDirectory(dir);

        string loss = prefix + "-loss.png", accuracy = prefix + "-accuracy.png";
        Draw(loss, "Loss", steps, s => s.Loss, epochs, e => e.TrainLoss, e => e.TestLoss);
        Draw(accuracy, "Accuracy", steps, s => s.Accuracy, epochs, e => e.TrainAccuracy, e => e.TestAccuracy);
        return new Written(loss, accuracy, steps.Count, epochs.Count);
    }

    /// The plots' prefix for a run: next to the report if there is one, else next to the metrics.
    public static string PrefixFor(string metricsPath, string? reportPath) =>
        Path.ChangeExtension(reportPath ?? metricsPath, null);

    readonly record struct StepPoint(long Step, double Loss, double Accuracy);
    readonly record struct EpochPoint(int Epoch, long Step, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy);

    static (List<StepPoint>, List<EpochPoint>) Read(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: metrics file not found");
        var steps = new SortedDictionary<long, StepPoint>();
        var epochs = new SortedDictionary<int, EpochPoint>();
        int number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var o = doc.RootElement;
                switch (o.GetProperty("event").GetString())
                {
                    case "step":
                        long step = o.GetProperty("step").GetInt64();
                        steps[step] = new StepPoint(step, Value(o, "loss"), Value(o, "accuracy"));
                        break;
                    case "epoch":
                        int epoch = o.GetProperty("epoch").GetInt32();
                        epochs[epoch] = new EpochPoint(epoch, o.GetProperty("step").GetInt64(), Value(o, "train_loss"), Value(o, "train_accuracy"),
                                                       Value(o, "test_loss"), Value(o, "test_accuracy"));
                        break;
                }
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new BadInputException($"{path}: line {number} is not a metrics record of disttrain train --metrics ({e.GetType().Name})");
            }
        }
        return (steps.Values.ToList(), epochs.Values.ToList());
    }

    static double Value(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN;

    static void Draw(string path, string what, List<StepPoint> steps, Func<StepPoint, double> stepValue,
                     List<EpochPoint> epochs, Func<EpochPoint, double> train, Func<EpochPoint, double> test)
    {
        var plot = new Plot();
        if (steps.Count > 0)
        {
            double[] xs = steps.Select(s => (double)s.Step).ToArray();
            double[] ys = steps.Select(stepValue).ToArray();
            var raw = plot.Add.ScatterLine(xs, ys);
            raw.Color = Colors.SteelBlue.WithAlpha(0.35);
            raw.LineWidth = 1;
            raw.LegendText = $"training {what.ToLowerInvariant()} per step";
            int window = Math.Clamp(steps.Count / 50, 1, 200);
            var smooth = plot.Add.ScatterLine(xs, MovingAverage(ys, window));
            smooth.Color = Colors.Navy;
            smooth.LineWidth = 2;
            smooth.LegendText = $"moving average of {window} steps";
        }
        if (epochs.Count > 0)
        {
            double[] ex = epochs.Select(e => (double)e.Step).ToArray();
            var trainPoints = plot.Add.ScatterPoints(ex, epochs.Select(train).ToArray());
            trainPoints.Color = Colors.DarkOrange;
            trainPoints.MarkerSize = 9;
            trainPoints.LegendText = $"training {what.ToLowerInvariant()}, epoch mean";
            var testPoints = plot.Add.Scatter(ex, epochs.Select(test).ToArray());
            testPoints.Color = Colors.Crimson;
            testPoints.MarkerSize = 9;
            testPoints.LineWidth = 2;
            testPoints.LegendText = $"test {what.ToLowerInvariant()} after the epoch";
            foreach (var e in epochs)
            {
                var boundary = plot.Add.VerticalLine(e.Step);
                boundary.Color = Colors.Gray.WithAlpha(0.6);
                boundary.LinePattern = LinePattern.Dashed;
                boundary.Text = $"epoch {e.Epoch}";
            }
        }
        plot.Title($"{what} against steps (dashed lines: ends of epochs)");
        plot.XLabel("step");
        plot.YLabel(what.ToLowerInvariant());
        plot.ShowLegend(what == "Loss" ? Alignment.UpperRight : Alignment.LowerRight);
        plot.SavePng(path, 1000, 600);
    }

    static double[] MovingAverage(double[] ys, int window)
    {
        var result = new double[ys.Length];
        double sum = 0;
        int count = 0;
        for (int i = 0; i < ys.Length; i++)
        {
            if (double.IsFinite(ys[i])) { sum += ys[i]; count++; }
            if (i >= window && double.IsFinite(ys[i - window])) { sum -= ys[i - window]; count--; }
            result[i] = count > 0 ? sum / count : double.NaN;
        }
        return result;
    }
}
