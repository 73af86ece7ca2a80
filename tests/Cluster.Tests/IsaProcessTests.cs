using DistTrain.Cnn.Data;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// Invariant 3 across CPUs: the same job trains to the same parameter bits whichever vector ISA
/// the JIT compiles the kernels for. Each run is a child process under the runtime's switch, so
/// every path this CPU can run is covered (on a CPU without AVX-512 the first switch changes nothing).
public sealed class IsaProcessTests : ProcessTests
{
    static readonly (string Name, string Value)[][] Isas =
    [
        [],                                   // the CPU's widest vectors
        [("DOTNET_EnableAVX512", "0")],       // 256-bit (AVX2 + FMA)
        [("DOTNET_EnableAVX2", "0")],         // 128-bit, FMA in software: slow, so the runs are short
    ];

    [Theory]
    [InlineData("lenet5", "64", "4")]
    [InlineData("mnist-cnn", "32", "1")]   // dropout, and the wide dense layer's NT products
    public void Every_vector_isa_trains_to_the_same_parameter_bits(string model, string batch, string steps)
    {
        string data = IdxFolder.Write(Dir["small"], DatasetFolder.Synthetic(trainCount: 256, testCount: 32, seed: 4));
        var hashes = Isas.Select(isa =>
        {
            var (exit, output, report) = TrainWith(isa, data, "--model", model, "--batch", batch, "--max-steps", steps, "--workers", "2", "--in-process");
            Assert.True(exit == 0, $"{string.Join(" ", isa.Select(v => $"{v.Name}={v.Value}"))}: exit {exit}\n{output}");
            return report.GetProperty("parameter_sha256").GetString();
        }).ToArray();
        Assert.NotEqual("", hashes[0]);
        Assert.All(hashes, h => Assert.Equal(hashes[0], h));
    }

    [Fact]
    public void Batch_norm_residual_blocks_and_augmentation_train_to_the_same_bits_on_every_vector_isa()
    {
        // Colour images (a folder of PNGs) through batch norm, a projecting residual block and global
        // average pooling, augmented: resnet20's parts at a size the 128-bit path runs in seconds.
        var colours = DatasetFolder.Synthetic(trainCount: 128, testCount: 16, seed: 6, height: 12, width: 12, channels: 3);
        string data = ImageFolderWriter.Write(Dir["colours"], colours, [.. Enumerable.Range(0, 10).Select(c => $"c{c}")]);
        string model = Dir["bn-res.json"];
        File.WriteAllText(model, """
            { "name": "bn-res", "input": [3, 12, 12], "layers": [
              { "type": "conv2d", "filters": 8, "kernel": 3, "padding": 1 }, { "type": "batchnorm" }, { "type": "relu" },
              { "type": "residual", "filters": 8 }, { "type": "residual", "filters": 16, "stride": 2 },
              { "type": "globalavgpool" }, { "type": "dense", "units": 10 } ] }
            """);
        var hashes = Isas.Select(isa =>
        {
            var (exit, output, report) = TrainWith(isa, data, "--model", model, "--batch", "32", "--max-steps", "3", "--augment", "crop:2,flip", "--workers", "2", "--in-process");
            Assert.True(exit == 0, $"{string.Join(" ", isa.Select(v => $"{v.Name}={v.Value}"))}: exit {exit}\n{output}");
            return report.GetProperty("parameter_sha256").GetString();
        }).ToArray();
        Assert.NotEqual("", hashes[0]);
        Assert.All(hashes, h => Assert.Equal(hashes[0], h));
    }
}
