using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics;
using System.Text.RegularExpressions;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;

namespace DistTrain.Bench;

/// DistTrain next to a peer trainer (TorchSharp/libtorch: ../shared/peers/torchsharp/run.sh THREADS
/// MODEL EPOCHS BATCH MAX_BATCHES, which prints train_img_per_s=N) in paired rounds: each round
/// times one DistTrain figure and then the peer's on the same network, threads and batch, back to
/// back, so that every ratio is taken within the same minute. This VM's speed drifts by tens of
/// percent from one minute to the next; a ratio of figures taken minutes apart measures the drift.
static partial class PeerBench
{
    public sealed record Round(double DistTrain, double? Peer, string? PeerError)
    {
        public double? Ratio => Peer is > 0 ? Math.Round(DistTrain / Peer.Value, 3) : null;
    }

    public sealed record Figure(string Model, int Threads, List<Round> Rounds);

    /// The presets and thread counts the compute targets name: lenet5 on 1 thread, mnist-cnn on 2 and
    /// 1, and resnet20 on 3 x 32 x 32 images on 2 (the peer's resnet20 mode trains on random images of
    /// that shape; its convolutions have no bias, ours do).
    static readonly (ModelSpec Spec, string PeerModel, int Threads, int Steps, int PeerBatches)[] Pairs =
    [
        (Presets.LeNet5, "lenet5", 1, 400, 300),
        (Presets.MnistCnn, "mnistcnn", 2, 60, 150),
        (Presets.MnistCnn, "mnistcnn", 1, 40, 100),
        (Presets.Fit(Presets.ResNet20, [3, 32, 32], 10), "resnet20", 2, 40, 50),
    ];

    /// CIFAR-shaped samples for resnet20: 128 steps of 64 per epoch, more than a figure times, so no timed window holds an evaluation.
    static readonly Lazy<DatasetFolder> Colour = new(() => DatasetFolder.Synthetic(8192, 64, seed: 1, height: 32, width: 32, channels: 3));

    public static List<Figure> Run(string script, int rounds, bool quick, DatasetFolder data, Action<string> progress)
    {
        var figures = Pairs.Select(p => new Figure(p.Spec.Name, p.Threads, [])).ToList();
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < Pairs.Length; i++)
            {
                var (spec, peerModel, threads, steps, peerBatches) = Pairs[i];
                var samples = spec.Input[0] == 3 ? Colour.Value : data;
                var mine = ComputeBench.Training(spec, threads, 64, 16, warmup: 10, quick ? steps / 4 : steps, samples);
                var (peer, error) = RunPeer(script, threads, peerModel, quick ? 30 : peerBatches);
                var round = new Round(mine.ImagesPerSecond, peer, error);
                figures[i].Rounds.Add(round);
                progress($"round {r + 1}/{rounds}, {spec.Name} {threads} thread(s): DistTrain {mine.ImagesPerSecond:F0} img/s, peer " +
                         (peer is { } p ? $"{p:F0} img/s, ratio {round.Ratio:F2}" : $"failed: {error}"));
            }
        return figures;
    }

    /// The libtorch kernels that match this process's vector ISA, for ATEN_CPU_CAPABILITY.
    static string AtenCapability() => Vector512.IsHardwareAccelerated ? "avx512" : Vector256.IsHardwareAccelerated ? "avx2" : "default";

    [GeneratedRegex(@"train_img_per_s=([0-9.]+)")]
    private static partial Regex ImagesPerSecond();

    static (double? ImagesPerSecond, string? Error) RunPeer(string script, int threads, string model, int batches)
    {
        var psi = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { script, threads.ToString(CultureInfo.InvariantCulture), model, "1", "64", batches.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        psi.Environment["ATEN_CPU_CAPABILITY"] = AtenCapability();
        using var process = Process.Start(psi);
        if (process is null) return (null, $"could not start bash {script}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            return (null, "no answer in 10 minutes");
        }
        var match = ImagesPerSecond().Match(stdout);
        if (process.ExitCode == 0 && match.Success) return (double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), null);
        string last = (stderr.Result + stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "no output";
        return (null, $"exit {process.ExitCode}: {last}");
    }

    /// The JSON of the figures: each round's pair and ratio, and the median, lowest and highest ratio.
    public static object Json(string script, List<Figure> figures) => new
    {
        peer = script,
        method = "paired rounds: one DistTrain figure (batch 64, micro-batch 16) then the peer's (batch 64), back to back",
        aten_cpu_capability = AtenCapability(),
        figures = figures.Select(f =>
        {
            var ratios = f.Rounds.Where(r => r.Ratio is not null).Select(r => r.Ratio!.Value).Order().ToArray();
            return new
            {
                model = f.Model, threads = f.Threads, isa = Isa.Current, batch = 64, micro_batch = 16,
                rounds = f.Rounds.Select(r => new { disttrain_images_per_second = r.DistTrain, peer_images_per_second = r.Peer, ratio = r.Ratio, peer_error = r.PeerError }),
                median_ratio = ratios.Length > 0 ? ratios[ratios.Length / 2] : (double?)null,
                lowest_ratio = ratios.Length > 0 ? ratios[0] : (double?)null,
                highest_ratio = ratios.Length > 0 ? ratios[^1] : (double?)null,
            };
        }),
    };
}
