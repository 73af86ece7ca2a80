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
                                           DatasetFolder? data, string token, int threads, string name, TextWriter log)
    {
        // No seed nodes: the worker joins the cluster only once the coordinator has accepted its token.
        var config = ProtocolConfig.Cluster("worker", host, port);
        using var system = ActorSystem.Create(ProtocolConfig.SystemName, config);
        var stopped = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var settings = new WorkerActor.Settings(ProtocolConfig.CoordinatorPath(coordinatorHost, coordinatorPort), token, data, threads, name);
        system.ActorOf(WorkerActor.Props(settings, e => stopped.TrySetResult(e)), "worker");
        log.WriteLine($"worker {name} joining {coordinatorHost}:{coordinatorPort}" + (data is null ? " (no local data)" : $" with {data.Name} ({data.Sha256[..12]})"));
        string? error = await stopped.Task;
        await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance);
        if (error is null) { log.WriteLine($"worker {name}: job finished"); return 0; }
        log.WriteLine($"worker {name}: {error}");
        return error.StartsWith("refused", StringComparison.Ordinal) ? 2 : 4;
    }
}
