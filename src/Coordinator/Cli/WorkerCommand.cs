using DistTrain.Coordinator.Cluster;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
using DistTrain.Worker;

namespace DistTrain.Coordinator.Cli;

/// disttrain worker: joins a running coordinator and trains until the job ends.
public static class WorkerCommand
{
    public const string Usage =
        """
        disttrain worker --coordinator HOST:PORT [options]
          --coordinator HOST:PORT  the coordinator to join
          --host H                 address to bind and advertise (default 127.0.0.1)
          --port P                 port to bind (default 0: any free port)
          --threads T              compute threads (default: all cores)
          --data DIR               a local copy of the dataset; without it (or if it differs) samples are shipped
          --name NAME              how the coordinator names this worker (default: host name and process id)
          --token-file FILE        the job token (default: the DISTTRAIN_JOB_TOKEN environment variable)
          --tls-cert NODE.pfx      TLS with mutual authentication: this node's certificate (deploy/make-certs.sh)
          --tls-ca ca.crt          the job's CA; the coordinator must use the same. Password: DISTTRAIN_TLS_PASSWORD
          --join-timeout SECS      give up when the coordinator does not answer within SECS (default 60)
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        var a = new Arguments(args, new HashSet<string> { "--coordinator", "--host", "--port", "--threads", "--data", "--name", "--token-file", "--tls-cert", "--tls-ca", "--join-timeout" }, new HashSet<string>());
        string target = a.String("--coordinator") ?? throw new UsageException("worker needs --coordinator HOST:PORT");
        int colon = target.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(target[(colon + 1)..], out int coordinatorPort) || coordinatorPort is < 1 or > 65535)
            throw new UsageException($"--coordinator: expected HOST:PORT, got '{target}'");
        string host = a.String("--host", "127.0.0.1");
        int port = a.Int("--port", 0, min: 0, max: 65535);
        int threads = a.Int("--threads", Environment.ProcessorCount, min: 1, max: 1024);
        Parallelism.MaxThreads = threads;
        DatasetFolder? data = a.String("--data") is string dir ? DatasetFolder.Load(dir) : null;
        string name = a.String("--name", $"{Environment.MachineName}-{Environment.ProcessId}");
        string token = JobToken.Read(a.String("--token-file"))
            ?? throw new UsageException($"no job token: set {WorkerHost.TokenVariable} or pass --token-file FILE");
        var tls = TlsFiles.From(a.String("--tls-cert"), a.String("--tls-ca"))?.Load();
        var joinTimeout = TimeSpan.FromSeconds(a.Double("--join-timeout", 60, 0, 86_400, minExclusive: true));
        return WorkerHost.RunAsync(target[..colon], coordinatorPort, host, port, data, token, threads, name, output, tls, joinTimeout).GetAwaiter().GetResult();
    }
}
