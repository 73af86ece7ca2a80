using System.CommandLine;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Cli;

/// disttrain eval: the test loss and accuracy of a saved model.
public static class EvalCommand
{
    static readonly Option<string?> CheckpointOption = Opt.Text("--checkpoint FILE", "a .safetensors checkpoint written by disttrain train (required)");
    static readonly Option<string?> DataOption = Opt.Text("--data DIR", "dataset folder [default: data/mnist, fetched if absent]");
    static readonly Option<int> BatchOption = Opt.Int("--batch B", "images per forward pass", 500, min: 1, max: 1 << 20);

    public static Command Create(TextWriter output)
    {
        var command = new Command("eval", "the test loss and accuracy of a checkpoint on a dataset's test split") { CheckpointOption, DataOption, BatchOption };
        command.SetAction(p => Run(p, output));
        return command;
    }

    static int Run(ParseResult a, TextWriter output)
    {
        var path = a.GetValue(CheckpointOption) ?? throw new UsageException("eval needs --checkpoint FILE");
        int batch = a.GetValue(BatchOption);
        var checkpoint = TrainingCheckpoint.Load(path);
        var data = DataLocator.Load(a.GetValue(DataOption), output);
        if (data.Test.SampleSize != checkpoint.Model.InputShape.Size)
            throw new UsageException($"{path}: model {checkpoint.Model.Name} expects {checkpoint.Model.InputShape} inputs, {data.Name} has {data.Test.ShapeText}");
        TrainCommand.CheckClasses(path, checkpoint.Model, data);
        if (data.Sha256 != checkpoint.DatasetSha256)
            output.WriteLine($"note: {path} was trained on dataset {checkpoint.Dataset} ({checkpoint.DatasetSha256[..12]}), evaluating on {data.Name} ({data.Sha256[..12]})");
        var stats = Evaluation.Run(new GradientComputer(checkpoint.Model, new SoftmaxCrossEntropy()), data.Test, batch);
        output.WriteLine($"model {checkpoint.Model.Name} at step {checkpoint.Step}: test_loss {stats.MeanLoss:F4}  test_accuracy {stats.Accuracy:F4}  ({stats.Samples} images of {data.Name})");
        return ExitCodes.Done;
    }
}
