using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DistTrain.Cnn.Inference;
using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Cli;

/// disttrain predict: the classes a checkpoint's model gives images (PNG, JPEG, IDX files) or a
/// dataset folder's test split.
public static class PredictCommand
{
    static readonly Option<string?> CheckpointOption = Opt.Text("--checkpoint FILE", "a .safetensors checkpoint written by disttrain train (required)");
    static readonly Option<string?> DataOption = Opt.Text("--data DIR", "classify the test split of this dataset folder (and report the accuracy) instead of IMAGE files");
    static readonly Option<int> TopOption = Opt.Int("--top K", "classes shown per image, most probable first", 1, min: 1, max: 1000);
    static readonly Option<bool> JsonOption = Opt.Flag("--json", "one JSON document on stdout instead of a line per image");
    static readonly Option<int> BatchOption = Opt.Int("--batch B", "images per forward pass", Predictor.DefaultBatch, min: 1, max: 1 << 16);
    static readonly Argument<string[]> ImagesArgument = new("IMAGE") { Description = "PNG, JPEG or IDX image files", Arity = ArgumentArity.ZeroOrMore };

    public static Command Create(TextWriter output)
    {
        var command = new Command("predict", "the classes a checkpoint's model gives images, or a dataset folder's test split")
        {
            CheckpointOption, DataOption, TopOption, JsonOption, BatchOption, ImagesArgument,
        };
        command.SetAction(p => Run(p, output));
        return command;
    }

    static int Run(ParseResult a, TextWriter output)
    {
        var path = a.GetValue(CheckpointOption) ?? throw new UsageException("predict needs --checkpoint FILE");
        var files = a.GetValue(ImagesArgument) ?? [];
        var dataDir = a.GetValue(DataOption);
        if (files.Length == 0 && dataDir is null) throw new UsageException("predict needs IMAGE files or --data DIR");
        if (files.Length > 0 && dataDir is not null) throw new UsageException("predict takes IMAGE files or --data DIR, not both");
        int top = a.GetValue(TopOption), batch = a.GetValue(BatchOption);
        bool json = a.GetValue(JsonOption);

        var checkpoint = TrainingCheckpoint.Load(path);
        var info = checkpoint.RequireInference();
        var model = checkpoint.Model;
        PredictInputs inputs;
        if (dataDir is not null)
        {
            var data = Cnn.Data.DatasetFolder.Load(dataDir);
            TrainCommand.CheckClasses(path, model, data);
            inputs = PredictInputs.FromTestSplit(data, model.InputShape, info);
        }
        else inputs = PredictInputs.FromFiles(files, model.InputShape, info);

        var predictor = new Predictor(model, info);
        var logits = predictor.Logits(inputs.Images, batch);
        int outputs = model.OutputShape.Size, count = inputs.Images.Count, correct = 0;
        var rows = new List<object>(json ? count : 0);
        for (int i = 0; i < count; i++)
        {
            var row = logits.AsSpan(i * outputs, outputs);
            var best = predictor.Top(row, top);
            if (dataDir is not null && Predictor.ArgMax(row) == inputs.Images.Label(i)) correct++;
            if (json)
                rows.Add(new
                {
                    input = inputs.Names[i], label = best[0].Label, @class = best[0].Name,
                    top = best.Select(s => new { label = s.Label, @class = s.Name, probability = Math.Round(s.Probability, 6) }),
                    truth = dataDir is not null ? inputs.Images.Label(i) : (int?)null,
                });
            else
                output.WriteLine($"{inputs.Names[i]}: {string.Join(", ", best.Select(s => $"{s.Name} ({(100 * s.Probability).ToString("F1", CultureInfo.InvariantCulture)}%)"))}");
        }
        double? accuracy = dataDir is not null ? (double)correct / count : null;
        if (json)
            output.WriteLine(JsonSerializer.Serialize(new
            {
                checkpoint = path, model = model.Name, step = checkpoint.Step, images = count, accuracy, predictions = rows,
            }, new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull }));
        else if (accuracy is { } acc)
            output.WriteLine($"accuracy {acc.ToString("F4", CultureInfo.InvariantCulture)} ({correct} of {count} images of {inputs.Images.Name})");
        return ExitCodes.Done;
    }
}
