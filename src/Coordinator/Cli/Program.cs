using System.CommandLine;
using DistTrain.Cnn.Checkpoints;
using DistTrain.Cnn.Data;
using DistTrain.Coordinator.Cli;

namespace DistTrain.Coordinator;

public static class Program
{
    public static int Main(string[] args)
    {
        int code = Run(args, Console.Out, Console.Error);
        Console.Out.Flush();
        // Transport threads of a connection that failed may never stop; they must not keep the process.
        Environment.Exit(code);
        return code;
    }

    static RootCommand Commands(TextWriter output) =>
        new("disttrain: data-parallel CNN training on an Akka.NET cluster")
        {
            TrainCommand.Create(output), WorkerCommand.Create(output), EvalCommand.Create(output), PredictCommand.Create(output),
            ExportCommand.Create(output), SummaryCommand.Create(output), PlotCommand.Create(output),
        };

    /// The whole command line; user mistakes become one line on stderr and exit 2.
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = Commands(output);
        var invocation = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false };
        if (args.Length == 0)
        {
            root.Parse(["--help"]).Invoke(invocation);
            return ExitCodes.BadInput;
        }
        var parsed = root.Parse(args);
        string command = parsed.CommandResult.Command == root ? "disttrain" : $"disttrain {parsed.CommandResult.Command.Name}";
        if (parsed.Errors.Count > 0)
        {
            string message = parsed.UnmatchedTokens.FirstOrDefault() is string extra
                ? extra.StartsWith('-') ? $"unknown option {extra}" : command == "disttrain" ? $"unknown command '{extra}'" : $"unexpected argument '{extra}'"
                : parsed.Errors[0].Message;
            error.WriteLine($"{command}: {OneLine(message)} (see {command} --help)");
            return ExitCodes.BadInput;
        }
        try
        {
            return parsed.Invoke(invocation);
        }
        catch (Exception e) when (e is UsageException or BadInputException or DataFormatException or CheckpointFormatException or DistTrain.Protocol.TlsConfigurationException)
        {
            error.WriteLine($"{command}: {OneLine(e.Message)}");
            return ExitCodes.BadInput;
        }
    }

    static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
