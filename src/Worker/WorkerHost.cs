using Akka.Actor;
using DistTrain.Cnn.Data;
using DistTrain.Protocol;

namespace DistTrain.Worker;

/// The worker process: an actor system that joins the coordinator's cluster and runs one
/// WorkerActor until the job finishes. Exit codes follow the CLI contract.
public static class WorkerHost
{
    public const string TokenVariable = "DISTTRAIN_JOB_TOKEN";

    public static async Task<int> RunAsync(string coordinatorHost, int coordinatorPort, string host, int port,
                                           DatasetFolder? data, string token, int threads, string name, TextWriter log,
                                           Tls? tls = null, TimeSpan? joinTimeout = null, int dataPort = 0, long memoryBudget = 0)
    {
        // No seed nodes: the worker joins the cluster only once the coordinator has accepted its token.
        var config = ProtocolConfig.Cluster("worker", host, port);
        ActorSystem system;
        try { system = ProtocolConfig.StartSystem(Tls.Setup(config, tls), host, port, "--port"); }
        catch (PortUnavailableException e)
        {
            log.WriteLine($"worker {name}: {e.Message}");
            return 2;
        }
        using var _system = system;
        var stopped = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        // Gradient chunks between ring neighbours travel on the data plane (TCP, far cheaper per
        // byte than Akka.Remote: see the README's Benchmarks); in a TLS job each of its connections
        // is a TLS session under the job's CA, like Akka.Remote's.
        IActorRef worker = ActorRefs.Nobody;
        DataPlane.GradientDataPlane? plane;
        try
        {
            plane = new DataPlane.GradientDataPlane(host, dataPort, token, (from, chunk) => worker.Tell(new WorkerActor.RingChunk(from, chunk)),
                                                    line => log.WriteLine($"worker {name}: {line}"), tls: tls);
        }
        catch (System.Net.Sockets.SocketException e)
        {
            log.WriteLine($"worker {name}: cannot listen for gradients on {host}:{dataPort} (--data-port): {e.Message}");
            return 2;
        }
        using var _ = plane;
        var settings = new WorkerActor.Settings(ProtocolConfig.CoordinatorPath(coordinatorHost, coordinatorPort, tls is not null), token, data, threads, name, joinTimeout, plane)
            { MemoryBudget = memoryBudget };
        worker = system.ActorOf(WorkerActor.Props(settings, e => stopped.TrySetResult(e)), "worker");
        log.WriteLine($"worker {name} joining {coordinatorHost}:{coordinatorPort}" + (data is null ? " (no local data)" : $" with {data.Name} ({data.Sha256[..12]})") +
                      (tls is null ? "" : " over TLS") + $"; gradients on data port {plane.Port}");
        // Akka.Remote terminates the actor system when a TLS handshake with the coordinator fails.
        if (await Task.WhenAny(stopped.Task, system.WhenTerminated) != stopped.Task)
        {
            log.WriteLine($"worker {name}: the connection to the coordinator failed" +
                          (tls is null ? "" : " (TLS handshake refused: do both sides use certificates from the same CA?)"));
            return 4;
        }
        string? error = await stopped.Task;
        log.WriteLine(error is null ? $"worker {name}: job finished" : $"worker {name}: {error}");
        log.Flush();
        if (!await ProtocolConfig.ShutDownWithin(system, ProtocolConfig.ShutdownLimit))
            log.WriteLine($"worker {name}: the actor system did not shut down within {ProtocolConfig.ShutdownLimit.TotalSeconds:F0}s; exiting anyway");
        return error is null ? 0 : error.StartsWith("refused", StringComparison.Ordinal) ? 2 : 4;
    }
}
