using DistTrain.Cnn.Data;
using DistTrain.Cnn.Export;
using DistTrain.Cnn.Inference;
using DistTrain.Cnn.Models;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Inference;

/// The ONNX export of every layer type, checked by onnx.checker and run by ONNX Runtime against
/// DistTrain's own forward pass, without training (parameters from the seed, batch-norm statistics
/// and scales drawn at random so that no batch norm is the identity).
public class ExportTests
{
    /// Relative to each image's largest logit: the two runtimes sum in other orders.
    const double Tolerance = 1e-5;

    static readonly ModelSpec EveryLayer = new()
    {
        Name = "every-layer",
        Input = [1, 28, 28],
        Layers =
        [
            new() { Type = "conv2d", Filters = 6, Kernel = 3, Stride = 2, Padding = 1 }, new() { Type = "batchnorm" }, new() { Type = "tanh" },
            new() { Type = "residual", Filters = 6 }, new() { Type = "residual", Filters = 8, Stride = 2 },
            new() { Type = "avgpool2d", Size = 2 }, new() { Type = "conv2d", Filters = 8, Kernel = 1 }, new() { Type = "sigmoid" },
            new() { Type = "maxpool2d", Size = 2, Stride = 1 }, new() { Type = "dropout", Rate = 0.5 }, new() { Type = "flatten" },
            new() { Type = "dense", Units = 16 }, new() { Type = "batchnorm" }, new() { Type = "relu" },
            new() { Type = "conv2d", Filters = 12, Kernel = 1 }, new() { Type = "globalavgpool" },
            new() { Type = "dense", Units = 10 },
        ],
    };

    static DatasetFolder Mnist() => DatasetFolder.Load(Repository.Mnist ?? throw new InvalidOperationException("data/mnist is missing: tests/run.sh fetches it"));

    static Model RandomModel(ModelSpec spec, int seed)
    {
        var model = Model.Create(spec);
        model.Initialize((ulong)seed);
        var random = new Random(seed);
        foreach (var v in model.Views)
        {
            var values = model.Parameters.AsSpan(v.Offset, v.Length);
            bool norm = v.Name.Contains("bn");
            for (int i = 0; i < values.Length; i++)
            {
                if (v.Name.EndsWith(".running_mean")) values[i] = (float)(random.NextDouble() - 0.5) * 0.4f;
                else if (v.Name.EndsWith(".running_var")) values[i] = 0.5f + (float)random.NextDouble() * 1.5f;
                else if (norm && v.Name.EndsWith(".weight")) values[i] = 0.5f + (float)random.NextDouble();
                else if (norm && v.Name.EndsWith(".bias")) values[i] = (float)(random.NextDouble() - 0.5) * 0.2f;
            }
        }
        return model;
    }

    [Theory]
    [InlineData("lenet5")]
    [InlineData("mnist-cnn")]
    [InlineData("resnet20")]
    [InlineData("every-layer")]
    public void Onnx_runtime_gives_the_models_own_logits_on_256_mnist_test_images(string name)
    {
        var data = Mnist();
        var spec = name == "every-layer" ? EveryLayer : Presets.Fit(Presets.Resolve(name), [1, 28, 28], 10);
        var model = RandomModel(spec, seed: 7);
        using var dir = new TempFolder("onnx");
        string path = dir[$"{name}.onnx"];
        OnnxExport.Write(path, model, InferenceInfo.Of(data, 10));
        OnnxCheck.Checker(path);
        var own = OnnxCheck.OwnLogits(model, data.Test, 256);
        var runtime = OnnxCheck.RuntimeLogits(path, data.Test, 256);
        OnnxCheck.Close(own, runtime, 10, Tolerance, name);
        // Not a vacuous match: the logits differ from image to image.
        Assert.True(OnnxCheck.Top1(own, 10).Distinct().Count() > 1 || own.Distinct().Count() > 100);
    }

    [Fact]
    public void Resnet20_on_colour_images_exports_with_its_per_channel_normalisation()
    {
        var data = CifarFolder.Synthetic(train: 64, test: 64, seed: 3);
        var model = RandomModel(Presets.ResNet20, seed: 11);
        using var dir = new TempFolder("onnx");
        string path = dir["resnet20.onnx"];
        var info = InferenceInfo.Of(data, 10);
        Assert.Equal(3, info.Mean.Count);
        OnnxExport.Write(path, model, info);
        OnnxCheck.Checker(path);
        OnnxCheck.Close(OnnxCheck.OwnLogits(model, data.Test, 64), OnnxCheck.RuntimeLogits(path, data.Test, 64), 10, Tolerance, "resnet20 3x32x32");
    }

    [Fact]
    public void The_graph_carries_the_class_names_and_normalisation_as_metadata()
    {
        var model = RandomModel(Presets.LeNet5, seed: 1);
        var info = new InferenceInfo([0.25f], [0.5f], ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]);
        using var dir = new TempFolder("onnx");
        OnnxExport.Write(dir["m.onnx"], model, info);
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(dir["m.onnx"]);
        var meta = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal(info.Classes, System.Text.Json.JsonSerializer.Deserialize<string[]>(meta["classes"]));
        Assert.Equal([0.25f], System.Text.Json.JsonSerializer.Deserialize<float[]>(meta["mean"]));
        Assert.Equal([0.5f], System.Text.Json.JsonSerializer.Deserialize<float[]>(meta["std"]));
        Assert.Equal(["pixels"], session.InputMetadata.Keys);
        Assert.Equal([-1, 1, 28, 28], session.InputMetadata["pixels"].Dimensions);
        Assert.Equal(["logits"], session.OutputMetadata.Keys);
        Assert.Equal(new[] { dir["m.onnx"] }, Directory.GetFiles(dir.Path));   // no temporary file left
    }
}
