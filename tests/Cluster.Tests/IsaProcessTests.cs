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
}
