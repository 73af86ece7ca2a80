using System.Runtime.Intrinsics;
using System.Text.Json;
using DistTrain.Bench;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;

// disttrain-bench [--quick] [--only compute,network,allreduce,cluster] [--isa native|avx2|128] [--data DIR] [--out FILE.json]
//                 [--peer RUN.sh [--rounds N]]
// Prints one JSON document with every figure and the conditions it was measured under.
if (args.Length > 0 && args[0] == "allreduce-node") return NetworkBench.Node(args);
if (args.Length > 0 && args[0] == "serializer")
{
    using var sys = Akka.Actor.ActorSystem.Create("s", DistTrain.Protocol.ProtocolConfig.Local());
    var ser = new DistTrain.Protocol.ProtocolSerializer((Akka.Actor.ExtendedActorSystem)sys);
    var chunk = new DistTrain.Protocol.GradientChunk(1, 2, 0, 0, 0, 1, new byte[1 << 20]);
    for (int w = 0; w < 50; w++) ser.FromBinary(ser.ToBinary(chunk), "GradientChunk");
    var sw = System.Diagnostics.Stopwatch.StartNew();
    for (int i = 0; i < 200; i++) ser.FromBinary(ser.ToBinary(chunk), "GradientChunk");
    Console.WriteLine($"serialize+deserialize 1 MiB chunk: {sw.Elapsed.TotalMilliseconds / 200:F3} ms");
    var akkaSer = sys.Serialization.FindSerializerFor(chunk);
    Console.WriteLine($"akka picks {akkaSer.GetType().Name}");
    return 0;
}

bool quick = false;
string? outPath = null, dataDir = null, isa = "native", peerScript = null;
int rounds = 3;
const string Usage = "usage: disttrain-bench [--quick] [--only compute,network,allreduce,cluster] [--isa native|avx2|128] [--data DIR] [--out FILE.json] [--peer RUN.sh [--rounds N]]";
var only = new HashSet<string> { "compute", "network", "allreduce", "cluster" };
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--quick": quick = true; break;
        case "--out" when i + 1 < args.Length: outPath = args[++i]; break;
        case "--data" when i + 1 < args.Length: dataDir = args[++i]; break;
        case "--isa" when i + 1 < args.Length:
            isa = args[++i];
            if (isa is not ("native" or "avx2" or "128")) { Console.Error.WriteLine($"disttrain-bench: --isa: expected native, avx2 or 128, got '{isa}'"); return 2; }
            break;
        case "--peer" when i + 1 < args.Length:
            peerScript = Path.GetFullPath(args[++i]);
            if (!File.Exists(peerScript)) { Console.Error.WriteLine($"disttrain-bench: --peer: {peerScript}: no such file; expected the peer's run.sh (THREADS MODEL EPOCHS BATCH MAX_BATCHES)"); return 2; }
            break;
        case "--rounds" when i + 1 < args.Length:
            if (!int.TryParse(args[++i], out rounds) || rounds < 1) { Console.Error.WriteLine($"disttrain-bench: --rounds: expected a positive whole number, got '{args[i]}'"); return 2; }
            break;
        case "--only" when i + 1 < args.Length:
            only = [.. args[++i].Split(',')];
            if (only.Except(["compute", "network", "allreduce", "cluster"]).FirstOrDefault() is string bad)
            { Console.Error.WriteLine($"disttrain-bench: --only: unknown section '{bad}', expected compute, network, allreduce, cluster"); return 2; }
            break;
        default:
            Console.Error.WriteLine($"disttrain-bench: unknown argument '{args[i]}'; {Usage}");
            return 2;
    }
}
void Progress(string line) => Console.Error.WriteLine($"[bench {DateTime.Now:HH:mm:ss}] {line}");

// The JIT fixes the vector ISA at start-up, so a narrower one means running again with the
// runtime's switch; everything the bench starts (worker processes, peers) inherits it.
if (Isa.Forced(isa) is { } forced) return forced;

var result = new Dictionary<string, object?>
{
    ["machine"] = new
    {
        cores = Environment.ProcessorCount, os = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        dotnet = Environment.Version.ToString(), cpu = Isa.CpuModel(), isa = Isa.Current, fma = System.Runtime.Intrinsics.X86.Fma.IsSupported,
        avx512 = Vector512.IsHardwareAccelerated, avx2 = Vector256.IsHardwareAccelerated,
        isa_switch = Isa.ActiveSwitch(),
    },
    ["quick"] = quick,
};

var oneThread = new Dictionary<string, (double ImagesPerSecond, int Parameters)>();   // micro-batch 16, for the projection
var twoThreads = new Dictionary<string, double>();   // micro-batch 16, images/s: the cluster's ceiling
var measured = new List<NetworkBench.AllReduceFigure>();
var wireShare = new Dictionary<string, double>();   // model -> encoded all-reduce bytes over raw, from the 2-worker cluster figure
if (only.Contains("compute"))
{
    var peak = new List<object>();
    foreach (int t in new[] { 1, 2 })
    {
        double g = ComputeBench.PeakGflops(t, TimeSpan.FromSeconds(quick ? 0.5 : 2));
        peak.Add(new { threads = t, isa = Isa.Current, gflops = Math.Round(g, 1), kernel = Vector512.IsHardwareAccelerated ? "Vector512 FMA, 12 accumulators" : "Vector256 FMA, 12 accumulators" });
        Progress($"FMA peak, {t} thread(s): {g:F1} GFLOP/s");
    }
    result["peak_fma"] = peak;
    var data = DatasetFolder.Synthetic(trainCount: 65_536, testCount: 64, seed: 1);   // MNIST-shaped; 1,024 steps of 64 per epoch, so no timed window holds an evaluation
    var training = new List<object>();
    // Several seconds a figure: this VM's speed wanders by tens of percent over a second or two.
    foreach (var (spec, steps) in new[] { (Presets.LeNet5, quick ? 40 : 800), (Presets.MnistCnn, quick ? 6 : 100) })
        foreach (int t in new[] { 1, 2 })
            foreach (int micro in new[] { 16, 64 })
            {
                var f = ComputeBench.Training(spec, t, 64, micro, warmup: 10, steps, data);
                if (t == 1 && micro == 16) oneThread[f.Model] = (f.ImagesPerSecond, Model.Create(spec).ParameterCount);
                if (t == 2 && micro == 16) twoThreads[f.Model] = f.ImagesPerSecond;
                double peakT = ((dynamic)peak[t - 1]).gflops;
                training.Add(new
                {
                    model = f.Model, isa = Isa.Current, batch = f.Batch, micro_batch = f.MicroBatch, threads = f.Threads, steps = f.Steps,
                    images_per_second = f.ImagesPerSecond, gflops = f.Gflops, share_of_peak = Math.Round(f.Gflops / peakT, 3),
                    bytes_allocated_per_step = f.BytesAllocatedPerStep,
                });
                Progress($"{f.Model} batch 64 micro {micro}, {t} thread(s): {f.ImagesPerSecond:F0} img/s, {f.Gflops:F1} GFLOP/s, {f.BytesAllocatedPerStep:F0} B allocated/step");
            }
    result["training"] = training;
    result["peak_working_set_bytes"] = System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64;
}

if (peerScript is not null)
{
    // Paired with the peer round by round (TorchSharp/libtorch: ../shared/peers/torchsharp/run.sh).
    var data = DatasetFolder.Synthetic(trainCount: 65_536, testCount: 64, seed: 1);
    result["peer"] = PeerBench.Json(peerScript, PeerBench.Run(peerScript, rounds, quick, data, Progress));
}

double tcp = double.NaN;
if (only.Contains("network") || only.Contains("allreduce"))
{
    tcp = NetworkBench.TcpStreamBytesPerSecond(quick ? 256L << 20 : 2L << 30);
    result["tcp_stream"] = new { connection = "loopback, one stream, 1 MiB writes", gbytes_per_second = Math.Round(tcp / 1e9, 3) };
    Progress($"raw TCP stream: {tcp / 1e9:F2} GB/s");
}

if (only.Contains("allreduce"))
{
    var figures = new List<object>();
    long[] sizes = quick ? [64 << 10, 4 << 20] : [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20];
    foreach (string algorithm in new[] { "ring-tcp", "ring-tls", "ring", "star" })
        foreach (int n in new[] { 2, 3, 4 })
            foreach (long size in sizes)
            {
                int iterations = size >= 4 << 20 ? (quick ? 3 : 8) : (quick ? 10 : 30);
                var f = NetworkBench.AllReduce(algorithm, n, size, warmup: 3, iterations);
                measured.Add(f);
                figures.Add(new
                {
                    algorithm = f.Algorithm, processes = f.Processes, payload_bytes = f.PayloadBytes, iterations = f.Iterations,
                    latency_ms = f.LatencyMs, algorithm_gbytes_per_second = f.AlgorithmGBps, bus_gbytes_per_second = f.BusGBps,
                    bus_share_of_tcp_stream = Math.Round(f.BusGBps * 1e9 / tcp, 3),
                });
                Progress($"all-reduce {algorithm} N={n} {size >> 10} KiB: {f.LatencyMs:F1} ms, bus {f.BusGBps:F3} GB/s ({f.BusGBps * 1e9 / tcp:P0} of TCP)");
            }
    result["allreduce"] = figures;
}

if (only.Contains("cluster"))
{
    dataDir ??= Path.GetFullPath("data/mnist");
    if (!File.Exists(Path.Combine(dataDir, "train-images-idx3-ubyte")))
    {
        Console.Error.WriteLine($"disttrain-bench: {dataDir}: MNIST not found; run deploy/fetch-mnist.sh or pass --data DIR");
        return 2;
    }
    var figures = new List<object>();
    foreach (var (model, steps) in new[] { ("lenet5", quick ? 100 : 400), ("mnist-cnn", quick ? 40 : 150) })
        foreach (int w in new[] { 1, 2, 4 })
        {
            var f = ClusterBench.Run(model, w, steps, dataDir);
            if (w == 2 && f.RawAllReduceBytesPerStep > 0) wireShare[model] = f.AllReduceBytesPerStep / f.RawAllReduceBytesPerStep;
            figures.Add(new
            {
                model = f.Model, workers = f.Workers, steps = f.Steps, warmup_steps = f.WarmupSteps, batch = 64,
                images_per_second = f.ImagesPerSecond, run_images_per_second = f.RunImagesPerSecond,
                compute_share = f.ComputeShare, allreduce_share = f.ReduceShare, other_share = f.OtherShare, wall_seconds = f.WallSeconds,
                allreduce_bytes_per_step = f.AllReduceBytesPerStep, raw_allreduce_bytes_per_step = f.RawAllReduceBytesPerStep,
                allreduce_bytes_share_of_raw = f.RawAllReduceBytesPerStep > 0 ? Math.Round(f.AllReduceBytesPerStep / f.RawAllReduceBytesPerStep, 4) : (double?)null,
                // With the compute section in the same run: images/s over what the workers' cores
                // compute alone (each worker has cores / workers threads; 1 thread each for 2 workers).
                efficiency = w == 2 && oneThread.TryGetValue(model, out var alone) ? Math.Round(f.ImagesPerSecond / (2 * alone.ImagesPerSecond), 3) : (double?)null,
                // What 2 workers would reach with an all-reduce that cost nothing: both cores training
                // one step in one process (optimizer included, run once) over 2 x one core alone. On 2
                // vCPUs the cluster cannot pass it: its workers also run the optimizer twice and the ring.
                efficiency_ceiling = w == 2 && oneThread.TryGetValue(model, out var single) && twoThreads.TryGetValue(model, out var both)
                    ? Math.Round(both / (2 * single.ImagesPerSecond), 3) : (double?)null,
            });
            Progress($"cluster {model} {w} worker process(es): {f.ImagesPerSecond:F0} img/s steady, {f.RunImagesPerSecond:F0} over the run (compute {f.ComputeShare:P0}, all-reduce {f.ReduceShare:P0}, other {f.OtherShare:P0}); " +
                     $"all-reduce {f.AllReduceBytesPerStep / 1e6:F2} MB per step, raw int64s {f.RawAllReduceBytesPerStep / 1e6:F2} MB" +
                     (w == 2 && oneThread.TryGetValue(model, out var one) && twoThreads.TryGetValue(model, out var two)
                         ? $"; efficiency {f.ImagesPerSecond / (2 * one.ImagesPerSecond):P0}, ceiling with a free all-reduce {two / (2 * one.ImagesPerSecond):P0}" : ""));
        }
    result["cluster"] = figures;
}

if (oneThread.Count > 0 && ScalingProjection.FitRing(measured) is { } fit)
{
    // Weak scaling past this machine: each worker keeps a batch of 64 and the 1-thread compute measured above.
    var presets = new List<object>();
    foreach (var (model, (ips, parameters)) in oneThread)
    {
        // The int64 fixed-point sum, times the share the wire encoding sends when this run measured it
        // (its 2-worker cluster figure, at steady state); raw when it did not.
        double share = wireShare.TryGetValue(model, out double measuredShare) ? measuredShare : 1.0;
        double bytes = 8.0 * parameters * share;
        var rows = ScalingProjection.Project(ips, 64, bytes, fit);
        var last = rows[^1];
        double latency = 2.0 * (last.Workers - 1) * fit.AlphaSeconds, bandwidth = 2.0 * (last.Workers - 1) / last.Workers * bytes * fit.BetaSecondsPerByte;
        string limit = latency > bandwidth
            ? $"the per-hop latency alpha: at {last.Workers} workers the ring's latency term is {latency * 1e3:F1} ms against {bandwidth * 1e3:F1} ms of bandwidth"
            : $"the bytes per step (beta x S): at {last.Workers} workers the ring moves {bandwidth * 1e3:F1} ms of data against {latency * 1e3:F1} ms of latency";
        presets.Add(new { model, gradient_bytes = bytes, raw_gradient_bytes = 8.0 * parameters, wire_share = Math.Round(share, 4),
                          wire_share_source = wireShare.ContainsKey(model) ? "the 2-worker cluster figure of this run (encoded bytes over raw int64s)" : "none measured: raw int64s",
                          images_per_second_1_thread = ips, batch_per_worker = 64, rows, limit_first = limit });
        Progress($"projection {model}: {string.Join(", ", rows.Select(r => $"N={r.Workers} {r.BestEfficiency:P0} ({r.Best})"))}; limited first by {limit}");
    }
    result["projection"] = new
    {
        model = "weak scaling; step = compute of 64 images + all-reduce of the gradient, no overlap (a bound from below); ring T = 2(N-1) alpha + 2(N-1)/N S beta, pipelined double binary tree T = 2 ceil(log2 N) alpha + 2 S beta; S = the gradient's bytes on the wire (raw int64s times the encoding's share measured here with 2 workers; partial sums of more workers need a few more bits)",
        fit = new { alpha_us = Math.Round(fit.AlphaSeconds * 1e6, 1), beta_ns_per_byte = Math.Round(fit.BetaSecondsPerByte * 1e9, 3), points = fit.Points,
                    worst_relative_error = Math.Round(fit.WorstRelativeError, 3), source = "the ring-tcp all-reduce figures of this run (loopback between processes)" },
        reference = "Horovod: about 90% (88%) scaling efficiency at 128 GPUs for Inception V3 and ResNet-101 (Sergeev and Del Balso, 2018)",
        presets,
    };
}

// A figure that came out NaN or infinite (a failed measurement) is written as such instead of failing the report.
string json = JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });
Console.WriteLine(json);
if (outPath is not null)
{
    // Written beside and renamed, so a full disk or a kill never leaves half a report.
    string temporary = outPath + ".tmp";
    File.WriteAllText(temporary, json + "\n");
    File.Move(temporary, outPath, overwrite: true);
}
return 0;
