using System.Runtime.InteropServices;
using System.Diagnostics;
using Akka.Actor;
using DistTrain.Protocol;
using DistTrain.Worker;

namespace DistTrain.Coordinator.Cluster;

/// Starts a coordinator and its workers: as actors in this process, or as local worker processes
/// that join over loopback (the local cluster), or waiting for workers started elsewhere.
public static class ClusterRunner
{
    /// N worker actors inside this process, talking to the coordinator without remoting.
    public static async Task<ClusterOutcome> RunInProcessAsync(CoordinatorActor.Settings s, int workers, ITrainingObserver observer,
                                                              bool serializeMessages = false)
    {
        using var system = ActorSystem.Create(ProtocolConfig.SystemName, ProtocolConfig.Local(serializeMessages));
        var cluster = InProcessCluster.Start(system, s, workers, observer, ProtocolConfig.CoordinatorName);
        using var signals = InterruptOnSignals(cluster.Coordinator, observer);
        var outcome = await cluster.Completion;
        await system.Terminate();
        return outcome;
    }

    /// The coordinator as a cluster seed on host:port; `spawn` worker processes are started on this
    /// machine (the local cluster) and further workers may join from elsewhere until ExpectedWorkers.
    public static async Task<ClusterOutcome> RunClusterAsync(CoordinatorActor.Settings s, string host, int port, int spawn,
                                                            string? dataDir, int threadsPerWorker, ITrainingObserver observer,
                                                            TlsFiles? tls = null)
    {
        var config = ProtocolConfig.Cluster("coordinator", host, port);
        ActorSystem system;
        try { system = ProtocolConfig.StartSystem(Tls.Setup(config, tls?.Load()), host, port, "--port"); }
        catch (PortUnavailableException e) { throw new BadInputException(e.Message); }
        using var _system = system;
        var cluster = Akka.Cluster.Cluster.Get(system);
        cluster.Join(cluster.SelfAddress);
        int boundPort = cluster.SelfAddress.Port ?? port;
        var done = new TaskCompletionSource<ClusterOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var coordinator = system.ActorOf(CoordinatorActor.Props(s, observer, done), ProtocolConfig.CoordinatorName);
        using var signals = InterruptOnSignals(coordinator, observer);
        observer.Log($"coordinator listening on {host}:{boundPort}{(tls is null ? "" : " (TLS, mutual authentication)")}");

        var processes = new List<Process>();
        try
        {
            for (int i = 0; i < spawn; i++) processes.Add(StartWorkerProcess(host, boundPort, dataDir, threadsPerWorker, s.JobToken, $"local-{i + 1}", tls, observer));
            var outcome = await done.Task;
            // Workers exit on JobFinished; give them a moment together (a frozen one never does,
            // and three of them used to cost 10 s each), then make sure none is left behind.
            var deadline = DateTime.UtcNow + ProtocolConfig.WorkerProcessExit;
            foreach (var p in processes)
            {
                var left = deadline - DateTime.UtcNow;
                if (!p.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero)) p.Kill(entireProcessTree: true);
            }
            return outcome;
        }
        finally
        {
            foreach (var p in processes) { try { if (!p.HasExited) p.Kill(true); } catch (InvalidOperationException) { } p.Dispose(); }
            if (!await ProtocolConfig.ShutDownWithin(system, ProtocolConfig.ShutdownLimit))
                observer.Log($"the actor system did not shut down within {ProtocolConfig.ShutdownLimit.TotalSeconds:F0}s; exiting anyway");
        }
    }

    /// The first SIGINT or SIGTERM asks the coordinator to stop after the step in flight, with a
    /// checkpoint; a second one ends the process at once.
    static IDisposable InterruptOnSignals(IActorRef coordinator, ITrainingObserver observer)
    {
        int received = 0;
        void Handle(PosixSignalContext context)
        {
            if (Interlocked.Increment(ref received) > 1) return;
            context.Cancel = true;
            observer.Log($"{context.Signal}: stopping after the step in flight and saving a checkpoint (send it again to stop at once)");
            coordinator.Tell(new CoordinatorActor.Interrupt(context.Signal.ToString()));
        }
        var registrations = new[] { PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle) };
        return new Registrations(registrations);
    }

    sealed class Registrations(PosixSignalRegistration[] all) : IDisposable
    {
        public void Dispose() { foreach (var r in all) r.Dispose(); }
    }

    static Process StartWorkerProcess(string host, int port, string? dataDir, int threads, string token, string name, TlsFiles? tls, ITrainingObserver observer)
    {
        var psi = new ProcessStartInfo { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        // Run the same program: the apphost directly, or `dotnet disttrain.dll` when started that way
        // (the entry assembly: this library is not the program).
        string self = Environment.ProcessPath ?? "dotnet";
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.FileName = self;
            psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("no entry assembly to start worker processes from"));
        }
        else psi.FileName = self;
        foreach (var a in new[] { "worker", "--coordinator", $"{host}:{port}", "--host", host, "--threads", threads.ToString(), "--name", name })
            psi.ArgumentList.Add(a);
        if (dataDir is not null) { psi.ArgumentList.Add("--data"); psi.ArgumentList.Add(dataDir); }
        if (tls is not null) foreach (var a in new[] { "--tls-cert", tls.Certificate, "--tls-ca", tls.Authority }) psi.ArgumentList.Add(a);
        psi.Environment[WorkerHost.TokenVariable] = token;   // never on the command line, where `ps` shows it
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start a worker process");
        p.OutputDataReceived += (_, e) => { if (!string.IsNullOrWhiteSpace(e.Data)) observer.Log($"  [{name}] {e.Data}"); };
        p.ErrorDataReceived += (_, e) => { if (!string.IsNullOrWhiteSpace(e.Data)) observer.Log($"  [{name}] {e.Data}"); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}

/// The TLS files given on the command line: this node's .pfx and the job's CA certificate.
public sealed record TlsFiles(string Certificate, string Authority)
{
    public Tls Load() => Tls.Load(Certificate, Authority);

    /// --tls-cert and --tls-ca, both or neither.
    public static TlsFiles? From(string? certificate, string? authority) => (certificate, authority) switch
    {
        (null, null) => null,
        (string c, string a) => new TlsFiles(Path.GetFullPath(c), Path.GetFullPath(a)),
        (null, _) => throw new BadInputException("--tls-ca needs --tls-cert NODE.pfx (see deploy/make-certs.sh)"),
        (_, null) => throw new BadInputException("--tls-cert needs --tls-ca ca.crt (see deploy/make-certs.sh)"),
    };
}
