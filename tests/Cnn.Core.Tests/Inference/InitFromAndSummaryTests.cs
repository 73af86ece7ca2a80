using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using DistTrain.Cnn.Checkpoints;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Tests.Cli;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Inference;

public class InitFromAndSummaryTests
{
    /// A safetensors file as PyTorch's save_file writes it, in any element type: (name, dtype, shape, raw bytes).
    static void WriteRaw(string path, IEnumerable<(string Name, string Dtype, int[] Shape, byte[] Bytes)> tensors)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var t in list) header[t.Name] = new { dtype = t.Dtype, shape = t.Shape, data_offsets = new[] { offset, offset += t.Bytes.Length } };
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        using var file = File.Create(path);
        var length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        file.Write(length);
        file.Write(json);
        foreach (var t in list) file.Write(t.Bytes);
    }

    static byte[] Encode(ReadOnlySpan<float> values, string dtype)
    {
        int size = TensorInfo.DtypeSizes[dtype];
        var bytes = new byte[values.Length * size];
        for (int i = 0; i < values.Length; i++)
            switch (dtype)
            {
                case "F32": BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]); break;
                case "F16": BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * i), (Half)values[i]); break;
                case "BF16": BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), (ushort)(BitConverter.SingleToInt32Bits(values[i]) >> 16)); break;
                default: throw new ArgumentException(dtype);
            }
        return bytes;
    }

    /// lenet5's parameters rounded to what F16 and BF16 hold exactly (multiples of 1/256 in [-1, 1)).
    static Model Rounded(int seed)
    {
        var model = Model.Create(Presets.LeNet5);
        model.Initialize((ulong)seed);
        for (int i = 0; i < model.ParameterCount; i++) model.Parameters[i] = MathF.Round(Math.Clamp(model.Parameters[i], -1f, 0.99f) * 256) / 256;
        return model;
    }

    [Theory]
    [InlineData("F32")]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void Parameters_load_from_pytorch_style_tensors_of_each_float_type(string dtype)
    {
        var source = Rounded(3);
        using var dir = new TempFolder("init-from");
        var tensors = source.Views.Select(v => (v.Name, dtype, v.Shape, Encode(source.Parameters.AsSpan(v.Offset, v.Length), dtype))).ToList();
        tensors.Add(("bn0.num_batches_tracked", "I64", [], new byte[8]));   // PyTorch's counter: skipped
        WriteRaw(dir["w.safetensors"], tensors);
        var loaded = ModelWeights.Load(dir["w.safetensors"], Model.Create(Presets.LeNet5));
        Assert.Equal(source.Parameters, loaded);
    }

    [Fact]
    public void A_file_that_does_not_fit_the_model_names_what_is_wrong()
    {
        var source = Rounded(3);
        using var dir = new TempFolder("init-from");
        var all = source.Views.Select(v => (v.Name, "F32", v.Shape, Encode(source.Parameters.AsSpan(v.Offset, v.Length), "F32"))).ToList();
        WriteRaw(dir["missing.safetensors"], all.Where(t => t.Name != "conv2.bias"));
        WriteRaw(dir["extra.safetensors"], [.. all, ("fc9.weight", "F32", [1], Encode([1f], "F32"))]);
        WriteRaw(dir["shape.safetensors"], all.Select(t => t.Name == "dense1.weight" ? (t.Name, t.Item2, new[] { t.Shape[1], t.Shape[0] }, t.Item4) : t));
        WriteRaw(dir["nan.safetensors"], all.Select(t => t.Name == "conv1.bias" ? (t.Name, t.Item2, t.Shape, Encode(Enumerable.Repeat(float.NaN, t.Shape[0]).ToArray(), "F32")) : t));
        var model = Model.Create(Presets.LeNet5);
        Assert.Contains("missing 'conv2.bias'", Assert.Throws<CheckpointFormatException>(() => ModelWeights.Load(dir["missing.safetensors"], model)).Message);
        Assert.Contains("unexpected 'fc9.weight'", Assert.Throws<CheckpointFormatException>(() => ModelWeights.Load(dir["extra.safetensors"], model)).Message);
        Assert.Contains("'dense1.weight' has shape [400,120], model lenet5 expects [120,400]", Assert.Throws<CheckpointFormatException>(() => ModelWeights.Load(dir["shape.safetensors"], model)).Message);
        Assert.Contains("'conv1.bias' holds NaN", Assert.Throws<CheckpointFormatException>(() => ModelWeights.Load(dir["nan.safetensors"], model)).Message);
    }

    static string Hash(string stdout) => stdout.Split("parameter_sha256 ")[1][..64];

    [Fact]
    public void Train_starts_from_the_files_parameters()
    {
        using var dir = new TempFolder("init-from-cli");
        string data = CliHarness.IdxFolder(dir.Path, train: 256, test: 64, seed: 5);
        foreach (int seed in new[] { 1, 5 })
        {
            var model = Model.Create(Presets.LeNet5);
            model.Initialize((ulong)seed);
            SafeTensorsFile.Write(dir[$"seed{seed}.safetensors"], [.. model.Views.Select(v => (v.Name, v.Shape, (ReadOnlyMemory<float>)model.Parameters.AsMemory(v.Offset, v.Length)))],
                                  new Dictionary<string, string>());
        }
        string[] Train(params string[] extra) => ["train", "--data", data, "--in-process", "--max-steps", "3", "--seed", "1", "--progress", "plain", .. extra];
        var plain = CliHarness.Run(Train());
        var same = CliHarness.Run(Train("--init-from", dir["seed1.safetensors"]));
        var other = CliHarness.Run(Train("--init-from", dir["seed5.safetensors"]));
        Assert.True(plain.exit == 0 && same.exit == 0 && other.exit == 0, plain.stderr + same.stderr + other.stderr);
        Assert.Equal(Hash(plain.stdout), Hash(same.stdout));      // the seed's own parameters: the same run
        Assert.NotEqual(Hash(plain.stdout), Hash(other.stdout));  // other parameters: another run
        Assert.Contains($"parameters from {dir["seed5.safetensors"]}", other.stdout);

        var (exit, _, stderr) = CliHarness.Run(Train("--model", "mnist-cnn", "--init-from", dir["seed1.safetensors"]));
        Assert.Equal(2, exit);
        Assert.Contains("tensor 'conv1.weight' has shape [6,1,5,5], model mnist-cnn expects [32,1,3,3]", stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Summary_counts_each_layers_parameters_and_flops()
    {
        var model = Model.Create(Presets.LeNet5);
        var rows = ModelSummary.Rows(model);
        Assert.Equal(model.ParameterCount, rows.Sum(r => r.Parameters));
        // conv1: 6 filters of 5x5 over a 28x28 output (padding 2): 2 x 6 x 28 x 28 x 25 FLOPs.
        Assert.Equal(2L * 6 * 28 * 28 * 25, rows[0].Flops);
        Assert.Equal(new SampleShape(16, 5, 5), rows[5].Output);
        Assert.Equal(2L * 400 * 120, rows[6].Flops);

        var (exit, stdout, _) = CliHarness.Run("summary", "--model", "resnet20", "--input", "3,32,32", "--classes", "100");
        Assert.Equal(0, exit);
        Assert.Contains("model resnet20: 3x32x32 -> 100", stdout);
        Assert.Matches(@"res4\s+residual 32 /2, projection\s+32x16x16\s+14,816", stdout);
        Assert.Matches(@"dense1\s+dense 100\s+100\s+6,500", stdout);

        (exit, _, var stderr) = CliHarness.Run("summary", "--model", "lenet5", "--input", "1,28");
        Assert.Equal(2, exit);
        Assert.Contains("--input: expected C,H,W", stderr);
        (exit, _, stderr) = CliHarness.Run("summary", "--model", "lenet5", "--input", "1,3,3");
        Assert.Equal(2, exit);
        Assert.Contains("--model lenet5: layer", stderr);
    }
}
