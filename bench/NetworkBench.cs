using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Akka.Actor;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;
using DistTrain.Worker.DataPlane;

namespace DistTrain.Bench;

/// The wire and the collective: a raw TCP stream on loopback, and all-reduce between worker
/// processes with the code training uses: the ring over the workers' data plane (ring-tcp, what
/// training uses between processes; ring-tls, the same under TLS, what a TLS job uses), the ring
/// over Akka.Remote (ring, the fallback when a data plane cannot be reached), and the star through a hub.
static class NetworkBench
{
    /// One TCP stream on loopback, 1 MiB writes: bytes per second at the receiver.
    public static double TcpStreamBytesPerSecond(long bytes)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var sender = Task.Run(() =>
        {
            using var client = new TcpClient();
            client.NoDelay = true;
            client.Connect(IPAddress.Loopback, port);
            using var stream = client.GetStream();
            var buffer = new byte[1 << 20];
            for (long sent = 0; sent < bytes; sent += buffer.Length) stream.Write(buffer, 0, (int)Math.Min(buffer.Length, bytes - sent));
        });
        using var server = listener.AcceptTcpClient();
        using var input = server.GetStream();
        var read = new byte[1 << 20];
        long received = 0;
        var clock = Stopwatch.StartNew();
        while (received < bytes)
        {
            int n = input.Read(read, 0, read.Length);
            if (n == 0) break;
            received += n;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        sender.Wait();
        listener.Stop();
        return received / seconds;
    }

    public sealed record AllReduceFigure(string Algorithm, int Processes, long PayloadBytes, int Iterations, double LatencyMs,
                                         double AlgorithmGBps, double BusGBps);

    /// Starts N worker processes (and a hub for the star) that all-reduce `bytes` of int64 `iterations` times.
    /// The values need all 8 bytes in the wire encoding (GradientCodec), so `bytes` is what travels
    /// (plus 2 header bytes in 128) and the figures include the encoding's cost: the worst case of
    /// a training step, whose sums mostly encode far smaller.
    public static AllReduceFigure AllReduce(string algorithm, int n, long bytes, int warmup, int iterations)
    {
        int basePort = FreePortBlock(2 * n + 1);
        var processes = new List<Process>();
        try
        {
            int nodes = algorithm == "star" ? n + 1 : n;
            for (int rank = nodes - 1; rank >= 0; rank--)
            {
                var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                if (algorithm == "ring-tls") psi.Environment[CertVariable] = CertDir.Value;
                if (Path.GetFileNameWithoutExtension(psi.FileName) == "dotnet") psi.ArgumentList.Add(typeof(NetworkBench).Assembly.Location);
                foreach (var a in new[] { "allreduce-node", algorithm, rank.ToString(), n.ToString(), basePort.ToString(), bytes.ToString(), warmup.ToString(), iterations.ToString() })
                    psi.ArgumentList.Add(a);
                processes.Add(Process.Start(psi)!);
            }
            var rank0 = processes[^1];
            // Akka's log lines share stdout: the figure is the line marked RESULT.
            string? line;
            do line = rank0.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(5)).GetAwaiter().GetResult();
            while (line is not null && !line.StartsWith("RESULT ", StringComparison.Ordinal));
            if (line is null) throw new InvalidOperationException("rank 0 ended without a figure: " + rank0.StandardError.ReadToEnd());
            double seconds = double.Parse(line["RESULT ".Length..], System.Globalization.CultureInfo.InvariantCulture) / iterations;
            double algbw = bytes / seconds / 1e9;
            return new AllReduceFigure(algorithm, n, bytes, iterations, Math.Round(seconds * 1e3, 3), Math.Round(algbw, 3),
                Math.Round(algbw * 2 * (n - 1) / n, 3));
        }
        finally
        {
            // Ranks exit by themselves once done; the star's hub waits to be stopped.
            if (algorithm == "star" && processes.Count > 0) { try { processes[0].Kill(); } catch (InvalidOperationException) { } }
            foreach (var p in processes) { if (!p.WaitForExit(TimeSpan.FromSeconds(15))) p.Kill(); p.Dispose(); }
        }
    }

    static int FreePortBlock(int count)
    {
        for (int attempt = 0; attempt < 50; attempt++)
        {
            int start = Random.Shared.Next(20000, 60000);
            bool free = true;
            for (int i = 0; i < count && free; i++)
            {
                try { var l = new TcpListener(IPAddress.Loopback, start + i); l.Start(); l.Stop(); }
                catch (SocketException) { free = false; }
            }
            if (free) return start;
        }
        throw new InvalidOperationException("no block of free ports");
    }

    static int DataPlanePort(int basePort, int n, int rank) => basePort + n + 1 + rank;

    const string CertVariable = "DISTTRAIN_BENCH_CERTS";

    /// A CA and a node certificate for ring-tls, made once per bench run by deploy/make-certs.sh.
    static readonly Lazy<string> CertDir = new(() =>
    {
        string script = Path.Combine(Directory.GetCurrentDirectory(), "deploy", "make-certs.sh");
        if (!File.Exists(script)) throw new InvalidOperationException($"ring-tls needs {script}: run the bench from the repository's root");
        string dir = Path.Combine(Path.GetTempPath(), $"disttrain-bench-certs-{Environment.ProcessId}");
        var psi = new ProcessStartInfo("bash", [script, "--out", dir, "node"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["DISTTRAIN_TLS_PASSWORD"] = "";
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException("make-certs.sh failed: " + output);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return dir;
    });

    static string PeerPath(int basePort, int rank) => $"akka.tcp://{ProtocolConfig.SystemName}@127.0.0.1:{basePort + rank}/user/peer";

    /// The child process: rank r of a ring (or star worker, or the hub when rank == n).
    public static int Node(string[] args)
    {
        string algorithm = args[1];
        int rank = int.Parse(args[2]), n = int.Parse(args[3]), basePort = int.Parse(args[4]);
        long bytes = long.Parse(args[5]);
        int warmup = int.Parse(args[6]), iterations = int.Parse(args[7]);
        using var system = ActorSystem.Create(ProtocolConfig.SystemName, ProtocolConfig.Cluster("worker", "127.0.0.1", basePort + rank));
        var done = new TaskCompletionSource<double>();
        // ring-tcp and ring-tls: the ring's chunks travel on the workers' data plane (DataPlanePort) instead of Akka.Remote.
        IActorRef peer = ActorRefs.Nobody;
        var tls = algorithm == "ring-tls"
            ? Tls.Load(Path.Combine(Environment.GetEnvironmentVariable(CertVariable)!, "node.pfx"), Path.Combine(Environment.GetEnvironmentVariable(CertVariable)!, "ca.crt"), "")
            : null;
        using var plane = algorithm is "ring-tcp" or "ring-tls" && rank < n
            ? new GradientDataPlane("127.0.0.1", DataPlanePort(basePort, n, rank), "bench", (_, lease) => peer.Tell(lease), Console.Error.WriteLine, tls: tls)
            : null;
        if (rank == n) system.ActorOf(Props.Create(() => new Hub(n, bytes, basePort)), "peer");
        else peer = system.ActorOf(Props.Create(() => new Peer(algorithm, rank, n, bytes, basePort, warmup, iterations, done, plane)).WithDispatcher("disttrain.worker-dispatcher"), "peer");
        if (rank == n) { Thread.Sleep(Timeout.Infinite); return 0; }   // killed by the parent
        double seconds = done.Task.GetAwaiter().GetResult();
        if (rank == 0) Console.WriteLine("RESULT " + seconds.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        Thread.Sleep(1000);   // let the last chunks leave before the transport closes
        return 0;
    }

    sealed class Go { public static readonly Go Instance = new(); }

    sealed class Peer : ReceiveActor, IWithStash
    {
        public IStash Stash { get; set; } = null!;
        IActorRef _next = ActorRefs.Nobody;
        readonly long[] _sums, _input;
        IAllReduce _reduce = null!;
        int _iteration;
        readonly Stopwatch _clock = new();

        public Peer(string algorithm, int rank, int n, long bytes, int basePort, int warmup, int iterations, TaskCompletionSource<double> done,
                    GradientDataPlane? plane)
        {
            _sums = new long[bytes / 8];
            // Odd multiples of the golden ratio's 64-bit constant: nearly all far above 2^56 in magnitude.
            _input = Enumerable.Range(0, _sums.Length).Select(i => (long)(0x9E3779B97F4A7C15UL * (ulong)(2 * i + 1))).ToArray();
            string target = algorithm == "star" ? PeerPath(basePort, n) : PeerPath(basePort, (rank + 1) % n);
            Receive<Go>(_ =>
            {
                // Wait until the next node answers, then start; its chunks may already be stashed.
                try { _next = Context.ActorSelection(target).ResolveOne(TimeSpan.FromSeconds(1)).GetAwaiter().GetResult(); }
                catch (ActorNotFoundException) { Self.Tell(Go.Instance); return; }
                _reduce = algorithm switch
                {
                    "star" => new StarAllReduce(1, c => _next.Tell(c, Self)),
                    "ring-tcp" or "ring-tls" => new RingAllReduce(1, rank, n, plane!.Connect($"127.0.0.1:{DataPlanePort(basePort, n, (rank + 1) % n)}", $"rank-{rank}")),
                    _ => new RingAllReduce(1, rank, n, c => _next.Tell(c, Self)),
                };
                Become(() =>
                {
                    Receive<GradientChunk>(c => OnChunk(c.Header, c.Payload, null, warmup, iterations, done));
                    Receive<ChunkLease>(c => OnChunk(c.Header, c.Bytes, c, warmup, iterations, done));
                });
                Begin();
            });
            Receive<GradientChunk>(_ => Stash.Stash());
            Receive<ChunkLease>(_ => Stash.Stash());
            Self.Tell(Go.Instance);
        }

        /// As the worker does: a data-plane chunk's lease is disposed once handled or rejected.
        void OnChunk(ChunkHeader c, ReadOnlySpan<byte> payload, ChunkLease? lease, int warmup, int iterations, TaskCompletionSource<double> done)
        {
            if (c.Step > _iteration) { Stash.Stash(); return; }
            bool complete;
            try { complete = _reduce.Handle(c, payload); }
            finally { lease?.Dispose(); }
            if (!complete) return;
            _iteration++;
            if (_iteration == warmup) _clock.Start();
            if (_iteration == warmup + iterations) { done.TrySetResult(_clock.Elapsed.TotalSeconds); return; }
            Begin();
        }

        void Begin()
        {
            _input.CopyTo(_sums);
            _reduce.Start(_iteration, _sums);   // n >= 2: completes through chunks
            Stash.UnstashAll();
        }
    }

    sealed class Hub : ReceiveActor
    {
        public Hub(int n, long bytes, int basePort)
        {
            var reducer = new DistTrain.Coordinator.Cluster.StarReducer((int)(bytes / 8), n);
            var workers = Enumerable.Range(0, n).Select(r => Context.ActorSelection(PeerPath(basePort, r))).ToArray();
            Receive<GradientChunk>(c =>
            {
                var total = reducer.Add(Sender.Path.ToString(), c);
                if (total is null) return;
                foreach (var w in workers) foreach (var chunk in total) w.Tell(chunk, Self);
            });
        }
    }
}
