using System.Diagnostics;
using System.Text.Json;
using DistTrain.Cnn.Checkpoints;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Tests.Cli;
using DistTrain.Cnn.Training;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Inference;

/// lenet5 trained for one epoch on real MNIST through the CLI, once for the tests of this class.
public sealed class TrainedLenet : IDisposable
{
    public TempFolder Dir { get; } = new("trained");
    public string Checkpoint { get; }
    public string Onnx { get; }
    public DatasetFolder Data { get; }

    public TrainedLenet()
    {
        string mnist = Repository.Mnist ?? throw new InvalidOperationException("data/mnist is missing: tests/run.sh fetches it");
        Data = DatasetFolder.Load(mnist);
        var (exit, stdout, stderr) = CliHarness.Run("train", "--model", "lenet5", "--epochs", "1", "--in-process", "--data", mnist,
                                                    "--checkpoint-dir", Dir["ck"], "--progress", "plain");
        if (exit != 0) throw new InvalidOperationException($"training failed ({exit}): {stdout}{stderr}");
        Checkpoint = Directory.GetFiles(Dir["ck"], "*.safetensors").Max()!;
        Onnx = Dir["lenet5.onnx"];
        (exit, stdout, stderr) = CliHarness.Run("export", "--checkpoint", Checkpoint, "--onnx", Onnx);
        if (exit != 0) throw new InvalidOperationException($"export failed ({exit}): {stdout}{stderr}");
    }

    public void Dispose() => Dir.Dispose();
}

/// The done-when lines of "use the trained model": predict on PNGs cut from the MNIST test set,
/// ONNX Runtime on all 10,000 test images, the README's lines of ONNX Runtime compiled and run,
/// and one line with exit 2 for each wrong input.
public class UseTrainedModelTests(TrainedLenet trained) : IClassFixture<TrainedLenet>
{
    static (int exit, string stdout, string stderr) Run(params string[] args) => CliHarness.Run(args);

    int[] OwnLabels(int count)
    {
        var model = TrainingCheckpoint.Load(trained.Checkpoint).Model;
        return OnnxCheck.Top1(OnnxCheck.OwnLogits(model, trained.Data.Test, count), 10);
    }

    [Fact]
    public void The_checkpoint_records_the_normalisation_and_the_classes()
    {
        var info = TrainingCheckpoint.Load(trained.Checkpoint).Inference;
        Assert.NotNull(info);
        Assert.Equal(trained.Data.Train.Mean, info.Mean);
        Assert.Equal(trained.Data.Train.Std, info.Std);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString()), info.Classes);
    }

    [Fact]
    public void Predict_on_20_pngs_cut_from_the_test_set_gives_the_models_own_labels()
    {
        using var dir = new TempFolder("pngs");
        var files = Enumerable.Range(0, 20).Select(i =>
        {
            string path = dir[$"test-{i:D2}.png"];
            File.WriteAllBytes(path, ImageFolderWriter.Png(trained.Data.Test, i));
            return path;
        }).ToArray();
        var (exit, stdout, stderr) = Run(["predict", "--checkpoint", trained.Checkpoint, "--json", "--top", "3", .. files]);
        Assert.True(exit == 0, stderr);
        var doc = JsonDocument.Parse(stdout).RootElement;
        var predictions = doc.GetProperty("predictions").EnumerateArray().ToArray();
        Assert.Equal(files, predictions.Select(p => p.GetProperty("input").GetString()));
        Assert.Equal(OwnLabels(20), predictions.Select(p => p.GetProperty("label").GetInt32()));
        // Not only the same argmax: the same probabilities (printed to 6 decimals), which a wrong
        // normalisation of the PNGs would change even where the label survives.
        var own = OnnxCheck.OwnLogits(TrainingCheckpoint.Load(trained.Checkpoint).Model, trained.Data.Test, 20);
        for (int i = 0; i < 20; i++)
        {
            var row = own.AsSpan(i * 10, 10).ToArray();
            double max = row.Max(), sum = row.Sum(z => Math.Exp(z - max));
            double printed = predictions[i].GetProperty("top")[0].GetProperty("probability").GetDouble();
            Assert.True(Math.Abs(printed - 1 / sum) <= 1e-6, $"image {i}: predict says {printed}, the model's own forward pass {1 / sum}");
        }
        foreach (var p in predictions)
        {
            var top = p.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("probability").GetDouble()).ToArray();
            Assert.Equal(3, top.Length);
            Assert.True(top[0] >= top[1] && top[1] >= top[2] && top.Sum() <= 1 + 1e-6);
        }
        // The same 20 as one IDX file, and as colour PNGs (made gray again by luma), give the same labels.
        string idx = dir["images-idx3-ubyte"];
        IdxFile.WriteImages(idx, 20, 28, 28, trained.Data.Test.Pixels[..(20 * 784)]);
        (exit, stdout, stderr) = Run("predict", "--checkpoint", trained.Checkpoint, "--json", idx);
        Assert.True(exit == 0, stderr);
        Assert.Equal(OwnLabels(20), JsonDocument.Parse(stdout).RootElement.GetProperty("predictions").EnumerateArray().Select(p => p.GetProperty("label").GetInt32()));
        var rgb = Enumerable.Range(0, 20).Select(i => ColourPng(dir[$"rgb-{i:D2}.png"], trained.Data.Test, i)).ToArray();
        (exit, stdout, stderr) = Run(["predict", "--checkpoint", trained.Checkpoint, "--json", .. rgb]);
        Assert.True(exit == 0, stderr);
        Assert.Equal(OwnLabels(20), JsonDocument.Parse(stdout).RootElement.GetProperty("predictions").EnumerateArray().Select(p => p.GetProperty("label").GetInt32()));
    }

    /// Sample i of a one-channel set as an RGB PNG with the same value in every channel.
    static string ColourPng(string path, Dataset set, int i)
    {
        var rgb = new byte[3 * set.SampleSize];
        for (int c = 0; c < 3; c++) set.Pixels.Slice(i * set.SampleSize, set.SampleSize).CopyTo(rgb.AsSpan(c * set.SampleSize));
        var one = new Dataset("rgb", 3, set.Height, set.Width, 10, rgb, [0], [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);
        File.WriteAllBytes(path, ImageFolderWriter.Png(one, 0));
        return path;
    }

    [Fact]
    public void Predict_on_the_test_split_reports_the_accuracy_eval_reports()
    {
        var (exit, stdout, stderr) = Run("predict", "--checkpoint", trained.Checkpoint, "--data", Repository.Mnist!);
        Assert.True(exit == 0, stderr);
        string accuracy = stdout.Split('\n').Single(l => l.StartsWith("accuracy ")).Split(' ')[1];
        var (_, evalOut, _) = Run("eval", "--checkpoint", trained.Checkpoint, "--data", Repository.Mnist!);
        Assert.Contains($"test_accuracy {accuracy}", evalOut);
        Assert.Equal(10_001, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void Onnx_runtime_gives_the_same_top1_on_all_10000_test_images()
    {
        OnnxCheck.Checker(trained.Onnx);
        var model = TrainingCheckpoint.Load(trained.Checkpoint).Model;
        var own = OnnxCheck.OwnLogits(model, trained.Data.Test, 10_000);
        var runtime = OnnxCheck.RuntimeLogits(trained.Onnx, trained.Data.Test, 10_000);
        Assert.Equal(OnnxCheck.Top1(own, 10), OnnxCheck.Top1(runtime, 10));
        OnnxCheck.Close(own[..2560], runtime[..2560], 10, 1e-5, "lenet5 trained one epoch");
    }

    /// The README's class, compiled as it stands in a console project that references ONNX
    /// Runtime from NuGet, classifies the first 20 test images as predict does.
    [Fact]
    public void The_readme_lines_of_onnx_runtime_compile_and_classify_as_predict_does()
    {
        string readme = File.ReadAllText(Path.Combine(Repository.Root, "README.md"));
        int section = readme.IndexOf("\n## Use a trained model", StringComparison.Ordinal);
        Assert.True(section >= 0, "README.md has no section 'Use a trained model'");
        int start = readme.IndexOf("```csharp\n", section, StringComparison.Ordinal) + "```csharp\n".Length;
        string snippet = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.Contains("class Classifier", snippet);

        using var dir = new TempFolder("readme-onnx");
        File.WriteAllText(dir["Classifier.cs"], snippet);
        File.WriteAllText(dir["app.csproj"], """
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><ImplicitUsings>enable</ImplicitUsings><Nullable>enable</Nullable></PropertyGroup>
              <ItemGroup><PackageReference Include="Microsoft.ML.OnnxRuntime" Version="1.31.1" /></ItemGroup>
            </Project>
            """);
        // The app's own part: read the IDX images, scale each to pixel / 255, call the README's class.
        File.WriteAllText(dir["Program.cs"], """
            using Microsoft.ML.OnnxRuntime;
            using var session = new InferenceSession(args[0]);
            byte[] idx = File.ReadAllBytes(args[1]);
            for (int i = 0; i < int.Parse(args[2]); i++)
            {
                float[] pixels = new float[28 * 28];
                for (int p = 0; p < pixels.Length; p++) pixels[p] = idx[16 + i * 784 + p] / 255f;
                Console.WriteLine(Classifier.Classify(session, pixels, 1, 28, 28));
            }
            """);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = dir.Path };
        foreach (var a in new[] { "run", "-c", "Release", "--", trained.Onnx, Path.Combine(Repository.Mnist!, "t10k-images-idx3-ubyte"), "20" }) psi.ArgumentList.Add(a);
        var (exit, output) = Processes.RunToExit(psi, TimeSpan.FromMinutes(5));
        Assert.True(exit == 0, output);
        var labels = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => int.TryParse(l, out _)).Select(int.Parse);
        Assert.Equal(OwnLabels(20), labels);
    }

    [Fact]
    public void Wrong_images_and_checkpoints_get_one_line_and_exit_2()
    {
        using var dir = new TempFolder("bad-inputs");
        var cifar = CifarFolder.Synthetic(train: 8, test: 8, seed: 1);
        string big = dir["big.png"];
        File.WriteAllBytes(big, ImageFolderWriter.Png(cifar.Test, 0));   // 32x32 colour
        string text = dir["notes.png"];
        File.WriteAllText(text, "not an image");
        string digit = dir["digit.png"];
        File.WriteAllBytes(digit, ImageFolderWriter.Png(trained.Data.Test, 0));

        // A checkpoint of another model: resnet20 on 3x32x32 images.
        var resnet = Model.Create(Presets.ResNet20);
        resnet.Initialize(1);
        string other = dir["resnet20.safetensors"];
        TrainingCheckpoint.Save(other, resnet, DistTrain.Cnn.Optim.Optimizer.Create(new DistTrain.Cnn.Optim.OptimizerSettings(), resnet.ParameterCount), 1, 0, 1, 64, 16, "cifar", "00",
                                inference: DistTrain.Cnn.Inference.InferenceInfo.Of(cifar, 10));
        // A checkpoint from before checkpoints recorded the normalisation.
        var lenet = TrainingCheckpoint.Load(trained.Checkpoint);
        string old = dir["old.safetensors"];
        TrainingCheckpoint.Save(old, lenet.Model, lenet.Optimizer!, lenet.Step, lenet.Epoch, lenet.Seed, 64, 16, "mnist", "00");

        foreach (var (args, expected) in new (string[], string)[]
        {
            (["predict", "--checkpoint", trained.Checkpoint, big], "big.png: image is 32x32 pixels, the model takes 28x28"),
            (["predict", "--checkpoint", trained.Checkpoint, text], "notes.png: not a PNG or JPEG image"),
            (["predict", "--checkpoint", trained.Checkpoint, dir["missing.png"]], "missing.png: file not found"),
            (["predict", "--checkpoint", other, digit], "digit.png: image is 28x28 pixels, the model takes 32x32"),
            (["predict", "--checkpoint", other, "--data", Repository.Mnist!], "images are 1x28x28, the model takes 3x32x32"),
            (["predict", "--checkpoint", old, digit], "does not record the normalisation"),
            (["export", "--checkpoint", old, "--onnx", dir["old.onnx"]], "does not record the normalisation"),
            (["predict", "--checkpoint", text, digit], "notes.png"),
            (["predict", "--checkpoint", trained.Checkpoint], "predict needs IMAGE files or --data DIR"),
            (["export", "--checkpoint", trained.Checkpoint, "--onnx", dir["no/such/folder/m.onnx"]], "does not exist"),
            (["predict", "--checkpoint", trained.Checkpoint, "--top", "0", digit], "--top: expected a whole number from 1 to 1000, got '0'"),
        })
        {
            var (exit, stdout, stderr) = Run(args);
            Assert.True(exit == 2, $"{string.Join(" ", args)}: exit {exit}, {stdout}{stderr}");
            Assert.Contains(expected, stderr);
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        }
        Assert.False(File.Exists(dir["old.onnx"]));
    }
}
