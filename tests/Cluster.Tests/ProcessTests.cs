using System.Diagnostics;
using System.Text.Json;
using DistTrain.Cnn.Data;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// What the tests that start `disttrain` processes share: a temporary folder, a synthetic dataset
/// written as IDX files, and `disttrain train` run to its end with its report.
public abstract class ProcessTests : IDisposable
{
    protected readonly TempFolder Dir = new("mp");
    public void Dispose() => Dir.Dispose();

    /// A synthetic dataset as IDX files, so the processes read it like MNIST.
    protected string WriteData() => IdxFolder.Write(Dir["data"], DatasetFolder.Synthetic(640, 200, seed: 2));

    protected (int Exit, string Output, JsonElement Report) Train(string data, params string[] extra) => TrainWith([], data, extra);

    /// Train with these environment variables set for the process (and the workers it starts).
    protected (int Exit, string Output, JsonElement Report) TrainWith(IEnumerable<(string Name, string Value)> environment, string data, params string[] extra)
    {
        var report = Dir[$"r{Guid.NewGuid():N}.json"];
        var psi = DisttrainProcess.StartInfo(new[] { "train", "--data", data, "--seed", "5", "--report", report }
            .Concat(extra.Contains("--max-steps") ? extra : [.. extra, "--max-steps", "8"]));
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(Patience.Training), "training did not finish in 3 minutes");
        string output = stdout.Result + stderr.Result;
        var json = File.Exists(report) ? JsonDocument.Parse(File.ReadAllText(report)).RootElement.Clone() : default;
        return (p.ExitCode, output, json);
    }
}
