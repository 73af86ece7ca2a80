using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using DistTrain.Cnn.Models;

namespace DistTrain.Bench;

/// End to end: `disttrain train` with N local worker processes on real MNIST. Images/s in steady
/// state, from the metrics file's step times after the first fifth of the steps (process start,
/// JIT compilation and connection set-up are not training speed); the whole run's figure from
/// the report next to it; the share of a step spent computing, all-reducing and otherwise
/// (waiting, messages), over the whole run; and the gradient bytes all workers sent per step in
/// the same steady state, next to what the ring would send as raw int64s.
static partial class ClusterBench
{
    public sealed record ClusterFigure(string Model, int Workers, int Steps, int WarmupSteps, double ImagesPerSecond, double RunImagesPerSecond,
                                       double ComputeShare, double ReduceShare, double OtherShare, double WallSeconds,
                                       double AllReduceBytesPerStep, long RawAllReduceBytesPerStep);

    public static ClusterFigure Run(string model, int workers, int steps, string dataDir)
    {
        string report = Path.Combine(Path.GetTempPath(), $"disttrain-bench-{Guid.NewGuid():N}.json");
        string metrics = Path.ChangeExtension(report, ".jsonl");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
        foreach (var a in new[] { "train", "--model", model, "--workers", workers.ToString(), "--max-steps", steps.ToString(), "--data", dataDir, "--report", report, "--metrics", metrics, "--progress", "plain" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(20))) { p.Kill(true); throw new TimeoutException($"disttrain train --model {model} --workers {workers} took over 20 minutes"); }
        string output = stdout.Result + stderr.Result;
        if (p.ExitCode != 0) throw new InvalidOperationException($"disttrain train exited {p.ExitCode}: {output}");
        var json = JsonDocument.Parse(File.ReadAllText(report)).RootElement;
        File.Delete(report);
        int warmup = Math.Max(5, steps / 5);
        double seconds = 0, bytes = 0;
        int timed = 0;
        foreach (var line in File.ReadLines(metrics))
        {
            var m = JsonDocument.Parse(line).RootElement;
            if (m.GetProperty("event").GetString() != "step" || m.GetProperty("step").GetInt64() <= warmup) continue;
            seconds += 64 / m.GetProperty("images_per_second").GetDouble();   // the step's own time
            bytes += m.GetProperty("allreduce_bytes").GetInt64();
            timed++;
        }
        File.Delete(metrics);
        var shares = Shares().Match(output);
        double Share(int g) => shares.Success ? double.Parse(shares.Groups[g].Value, CultureInfo.InvariantCulture) / 100 : double.NaN;
        double run = json.GetProperty("train_images_per_second").GetDouble();
        // Each of N ranks sends 2(N-1)/N of the vector: 2(N-1) x 8 bytes a parameter in all, as raw int64s.
        long raw = 2L * (workers - 1) * 8 * Model.Create(Presets.Resolve(model)).ParameterCount;
        return new ClusterFigure(model, workers, steps, warmup, seconds > 0 ? Math.Round(64 * timed / seconds, 1) : run, run,
            Share(1), Share(2), Share(3), json.GetProperty("wall_seconds").GetDouble(), timed > 0 ? Math.Round(bytes / timed) : double.NaN, raw);
    }

    [GeneratedRegex(@"step time (\d+) % compute, (\d+) % all-reduce, (\d+) % other")]
    private static partial Regex Shares();
}
