using System.CommandLine;
using System.Globalization;
using DistTrain.Cnn.Models;

namespace DistTrain.Coordinator.Cli;

/// disttrain summary: a model's layers, output shapes, parameters and FLOPs, without data.
public static class SummaryCommand
{
    static readonly Option<string> ModelOption = Opt.Text("--model NAME|FILE", "lenet5, mnist-cnn, resnet20 or a model FILE.json", "lenet5")!;
    static readonly Option<string?> InputOption = Opt.Text("--input C,H,W", "the sample shape a preset takes [default: the preset's own]");
    static readonly Option<int?> ClassesOption = Opt.OptionalInt("--classes K", "outputs of a preset's last layer [default: 10]", min: 1, max: 256);

    public static Command Create(TextWriter output)
    {
        var command = new Command("summary", "a model's layers: output shapes, parameters and FLOPs per image") { ModelOption, InputOption, ClassesOption };
        command.SetAction(p => Run(p, output));
        return command;
    }

    static int Run(ParseResult a, TextWriter output)
    {
        string name = a.GetValue(ModelOption)!;
        ModelSpec spec;
        try { spec = Presets.Resolve(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        var inputText = a.GetValue(InputOption);
        int? classes = a.GetValue(ClassesOption);
        if (inputText is not null || classes is not null)
        {
            if (!Presets.IsPreset(name)) throw new UsageException($"--input and --classes reshape a preset; {name} declares its own input and outputs");
            int[] input = inputText is null ? spec.Input : ParseShape(inputText);
            spec = Presets.Fit(spec, input, classes ?? spec.Layers[^1].Units ?? 10);
        }
        Model model;
        try { model = Model.Create(spec); }
        catch (ArgumentException e) { throw new UsageException($"--model {name}: {e.Message}"); }
        output.WriteLine(ModelSummary.OneLine(model));
        output.Write(ModelSummary.Table(model));
        return ExitCodes.Done;
    }

    static int[] ParseShape(string text)
    {
        var parts = text.Split(',', 'x');
        if (parts.Length == 3 && parts.All(p => int.TryParse(p.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v is >= 1 and <= 4096))
            return [.. parts.Select(p => int.Parse(p.Trim(), CultureInfo.InvariantCulture))];
        throw new UsageException($"--input: expected C,H,W (three whole numbers from 1 to 4096), got '{text}'");
    }
}
