using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Cli;

/// disttrain eval: the test loss and accuracy of a saved model.
public static class EvalCommand
{
    public const string Usage =
        """
        disttrain eval --checkpoint FILE [--data DIR]
          --checkpoint FILE     a .safetensors checkpoint written by disttrain train
          --data DIR            dataset folder (default: data/mnist)
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        var a = new Arguments(args, new HashSet<string> { "--checkpoint", "--data", "--batch" }, new HashSet<string>());
        var path = a.String("--checkpoint") ?? throw new UsageException("eval needs --checkpoint FILE");
        int batch = a.Int("--batch", 500, min: 1, max: 1 << 20);
        var checkpoint = TrainingCheckpoint.Load(path);
        var data = DataLocator.Load(a.String("--data"), output);
        if (data.Test.SampleSize != checkpoint.Model.InputShape.Size)
            throw new UsageException($"{path}: model {checkpoint.Model.Name} expects {checkpoint.Model.InputShape} inputs, {data.Name} has {data.Test.Height}x{data.Test.Width}");
        if (data.Sha256 != checkpoint.DatasetSha256)
            output.WriteLine($"note: {path} was trained on dataset {checkpoint.Dataset} ({checkpoint.DatasetSha256[..12]}), evaluating on {data.Name} ({data.Sha256[..12]})");
        var stats = Evaluation.Run(new GradientComputer(checkpoint.Model, new SoftmaxCrossEntropy()), data.Test, batch);
        output.WriteLine($"model {checkpoint.Model.Name} at step {checkpoint.Step}: test_loss {stats.MeanLoss:F4}  test_accuracy {stats.Accuracy:F4}  ({stats.Samples} images of {data.Name})");
        return ExitCodes.Done;
    }
}
