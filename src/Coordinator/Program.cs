using DistTrain.Cnn.Checkpoints;
using DistTrain.Cnn.Data;
using DistTrain.Coordinator.Cli;

namespace DistTrain.Coordinator;

public static class Program
{
    const string Usage =
        """
        disttrain — data-parallel CNN training

        usage: disttrain <command> [options]
          train     train a model (see disttrain train --help)
          worker    join a running coordinator as a worker
          eval      evaluate a checkpoint on a dataset's test split
        """;

    public static int Main(string[] args)
    {
        int code = Run(args, Console.Out, Console.Error);
        Console.Out.Flush();
        // Transport threads of a connection that failed may never stop; they must not keep the process.
        Environment.Exit(code);
        return code;
    }

    /// The whole command line; user mistakes become one line on stderr and exit 2.
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help") { output.WriteLine(Usage); return args.Length == 0 ? ExitCodes.BadInput : ExitCodes.Done; }
        var rest = args.Skip(1).ToArray();
        try
        {
            return args[0] switch
            {
                "train" when WantsHelp(rest) => Help(output, TrainCommand.Usage),
                "train" => TrainCommand.Run(rest, output),
                "worker" when WantsHelp(rest) => Help(output, WorkerCommand.Usage),
                "worker" => WorkerCommand.Run(rest, output),
                "eval" when WantsHelp(rest) => Help(output, EvalCommand.Usage),
                "eval" => EvalCommand.Run(rest, output),
                _ => throw new UsageException($"unknown command '{args[0]}'; expected train, worker or eval (disttrain --help)"),
            };
        }
        catch (Exception e) when (e is UsageException or DataFormatException or CheckpointFormatException or DistTrain.Protocol.TlsConfigurationException)
        {
            error.WriteLine($"disttrain {args[0]}: {e.Message}");
            return ExitCodes.BadInput;
        }
    }

    static bool WantsHelp(string[] rest) => rest.Contains("--help") || rest.Contains("-h");

    static int Help(TextWriter output, string usage)
    {
        output.WriteLine(usage);
        return ExitCodes.Done;
    }
}
