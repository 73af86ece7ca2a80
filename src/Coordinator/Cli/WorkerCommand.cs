using System.CommandLine;
using DistTrain.Coordinator.Cluster;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
using DistTrain.Worker;

namespace DistTrain.Coordinator.Cli;

/// disttrain worker: joins a running coordinator and trains until the job ends.
public static class WorkerCommand
{
    static readonly Option<string?> CoordinatorOption = Opt.Text("--coordinator HOST:PORT", "the coordinator to join (required)");
    static readonly Option<string> HostOption = Opt.Text("--host H", "address to bind and advertise; the coordinator and the other workers must reach it", "127.0.0.1")!;
    static readonly Option<int> PortOption = Opt.Int("--port P", "Akka.Remote port to bind (0: any free port)", 0, min: 0, max: 65535);
    static readonly Option<int> DataPortOption = Opt.Int("--data-port P", "gradient data-plane port, TCP (TLS in a TLS job) from the ring predecessor (0: any free port)", 0, min: 0, max: 65535);
    static readonly Option<int?> ThreadsOption = Opt.OptionalInt("--threads T", "compute threads [default: all cores]", min: 1, max: 1024);
    static readonly Option<string?> DataOption = Opt.Text("--data DIR", "a local copy of the dataset; without it (or if it differs) the coordinator ships the samples");
    static readonly Option<string?> NameOption = Opt.Text("--name NAME", "how the coordinator names this worker [default: host name and process id]");
    static readonly Option<string?> TokenFileOption = Opt.Text("--token-file FILE", $"the job token [default: the {WorkerHost.TokenVariable} environment variable]");
    static readonly Option<string?> TlsCertOption = Opt.Text("--tls-cert NODE.pfx", "TLS with mutual authentication: this node's certificate (deploy/make-certs.sh; password from DISTTRAIN_TLS_PASSWORD)");
    static readonly Option<string?> TlsCaOption = Opt.Text("--tls-ca CA.crt", "the job's CA; the coordinator must use the same");
    static readonly Option<string?> MemoryBudgetOption = Opt.Text("--memory-budget SIZE", "leave the job, with the reason, when its model would need more than SIZE here, e.g. 8G [default: 90% of the memory .NET may use here]");
    static readonly Option<double> JoinTimeoutOption = Opt.Double("--join-timeout SECS", "give up when the coordinator does not answer within SECS", DistTrain.Protocol.ProtocolConfig.JoinTimeout.TotalSeconds, 0, 86_400, minExclusive: true);

    public static Command Create(TextWriter output)
    {
        var command = new Command("worker", "join a running coordinator as a worker and train until the job ends")
        {
            CoordinatorOption, HostOption, PortOption, DataPortOption, ThreadsOption, DataOption, NameOption, TokenFileOption, TlsCertOption, TlsCaOption, JoinTimeoutOption,
            MemoryBudgetOption, LogFormatOption,
        };
        command.SetAction(p => Run(p, output));
        return command;
    }

    static readonly Option<string> LogFormatOption = Opt.LogFormat();

    static int Run(ParseResult a, TextWriter output)
    {
        var (logOutput, logging) = Opt.Logs(a.GetValue(LogFormatOption)!, output, "disttrain.worker");
        // Akka's own lines (ConciseLogger) go the same way as the worker's.
        if (logging is not null) DistTrain.Protocol.ConciseLogger.Sink = logOutput.WriteLine;
        using (logging) return RunWith(a, logOutput);
    }

    static int RunWith(ParseResult a, TextWriter output)
    {
        string target = a.GetValue(CoordinatorOption) ?? throw new UsageException("worker needs --coordinator HOST:PORT");
        int colon = target.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(target[(colon + 1)..], out int coordinatorPort) || coordinatorPort is < 1 or > 65535)
            throw new UsageException($"--coordinator: expected HOST:PORT, got '{target}'");
        string host = Opt.LocalHost(a.GetValue(HostOption)!);
        int port = a.GetValue(PortOption);
        int threads = a.GetValue(ThreadsOption) ?? Environment.ProcessorCount;
        Parallelism.MaxThreads = threads;
        DatasetFolder? data = a.GetValue(DataOption) is string dir ? DatasetFolder.Load(dir) : null;
        string name = a.GetValue(NameOption) ?? $"{Environment.MachineName}-{Environment.ProcessId}";
        string token = JobToken.Read(a.GetValue(TokenFileOption))
            ?? throw new UsageException($"no job token: set {WorkerHost.TokenVariable} or pass --token-file FILE");
        var tls = TlsFiles.From(a.GetValue(TlsCertOption), a.GetValue(TlsCaOption))?.Load();
        var joinTimeout = TimeSpan.FromSeconds(a.GetValue(JoinTimeoutOption));
        int dataPort = a.GetValue(DataPortOption);
        if (dataPort != 0 && dataPort == port) throw new UsageException($"--data-port {dataPort}: the same as --port; give the data plane a port of its own");
        long memoryBudget = a.GetValue(MemoryBudgetOption) is { } budget
            ? DistTrain.Cnn.Training.MemoryEstimate.ParseSize(budget) ?? throw new UsageException($"--memory-budget: expected a size such as 800M or 16G, got '{budget}'")
            : DistTrain.Cnn.Training.MemoryEstimate.DefaultBudget;
        return WorkerHost.RunAsync(target[..colon], coordinatorPort, host, port, data, token, threads, name, output, tls, joinTimeout, dataPort, memoryBudget).GetAwaiter().GetResult();
    }
}
