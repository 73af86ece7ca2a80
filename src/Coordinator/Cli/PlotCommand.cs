using System.CommandLine;
using DistTrain.Coordinator.Reporting;

namespace DistTrain.Coordinator.Cli;

/// disttrain plot: draws the loss and accuracy curves of a --metrics file again (for example of a
/// run still going, or one that was stopped).
public static class PlotCommand
{
    static readonly Option<string?> MetricsOption = Opt.Text("--metrics FILE.jsonl", "the metrics file of disttrain train --metrics (required)");
    static readonly Option<string?> OutOption = Opt.Text("--out PREFIX", "write PREFIX-loss.png and PREFIX-accuracy.png [default: next to the metrics file]");

    public static Command Create(TextWriter output)
    {
        var command = new Command("plot", "draw loss and accuracy curves (PNG) from a metrics file") { MetricsOption, OutOption };
        command.SetAction(p =>
        {
            string metrics = p.GetValue(MetricsOption) ?? throw new UsageException("plot needs --metrics FILE.jsonl");
            var written = RunPlots.Write(metrics, p.GetValue(OutOption) ?? RunPlots.PrefixFor(metrics, null));
            output.WriteLine($"{written.Steps} steps and {written.Epochs} epochs plotted: {written.LossPng}, {written.AccuracyPng}");
            return ExitCodes.Done;
        });
        return command;
    }
}
