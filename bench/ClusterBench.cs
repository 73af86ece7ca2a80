using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace DistTrain.Bench;

/// End to end: `disttrain train` with N local worker processes on real MNIST; images/s from the
/// report, and the share of a step spent computing, all-reducing and otherwise (waiting, messages).
static partial class ClusterBench
{
    public sealed record ClusterFigure(string Model, int Workers, int Steps, double ImagesPerSecond, double ComputeShare,
                                       double ReduceShare, double OtherShare, double WallSeconds);

    public static ClusterFigure Run(string model, int workers, int steps, string dataDir)
    {
        string report = Path.Combine(Path.GetTempPath(), $"disttrain-bench-{Guid.NewGuid():N}.json");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
        foreach (var a in new[] { "train", "--model", model, "--workers", workers.ToString(), "--max-steps", steps.ToString(), "--data", dataDir, "--report", report })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(20))) { p.Kill(true); throw new TimeoutException($"disttrain train --model {model} --workers {workers} took over 20 minutes"); }
        string output = stdout.Result + stderr.Result;
        if (p.ExitCode != 0) throw new InvalidOperationException($"disttrain train exited {p.ExitCode}: {output}");
        var json = JsonDocument.Parse(File.ReadAllText(report)).RootElement;
        File.Delete(report);
        var shares = Shares().Match(output);
        double Share(int g) => shares.Success ? double.Parse(shares.Groups[g].Value, CultureInfo.InvariantCulture) / 100 : double.NaN;
        return new ClusterFigure(model, workers, steps, json.GetProperty("train_images_per_second").GetDouble(), Share(1), Share(2), Share(3),
            json.GetProperty("wall_seconds").GetDouble());
    }

    [GeneratedRegex(@"step time (\d+) % compute, (\d+) % all-reduce, (\d+) % other")]
    private static partial Regex Shares();
}
