using System.Diagnostics;
using System.Text.Json;
using DistTrain.Cnn.Data;

namespace DistTrain.Cluster.Tests;

/// A coordinator and two worker processes on loopback, started through the real command line.
public sealed class MultiProcessTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-mp-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// Writes a synthetic dataset as IDX files, so the processes read it like MNIST.
    string WriteData()
    {
        var data = DatasetFolder.Synthetic(640, 200, seed: 2);
        var dir = Path.Combine(_dir, "data");
        Directory.CreateDirectory(dir);
        IdxFile.WriteImages(Path.Combine(dir, "train-images-idx3-ubyte"), data.Train.Count, 28, 28, data.Train.Pixels);
        IdxFile.WriteLabels(Path.Combine(dir, "train-labels-idx1-ubyte"), data.Train.Labels);
        IdxFile.WriteImages(Path.Combine(dir, "t10k-images-idx3-ubyte"), data.Test.Count, 28, 28, data.Test.Pixels);
        IdxFile.WriteLabels(Path.Combine(dir, "t10k-labels-idx1-ubyte"), data.Test.Labels);
        return dir;
    }

    (int Exit, string Output, JsonElement Report) Train(string data, params string[] extra)
    {
        var report = Path.Combine(_dir, $"r{Guid.NewGuid():N}.json");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
        foreach (var a in new[] { "train", "--data", data, "--max-steps", "8", "--seed", "5", "--report", report }.Concat(extra)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(3)), "training did not finish in 3 minutes");
        string output = stdout.Result + stderr.Result;
        var json = File.Exists(report) ? JsonDocument.Parse(File.ReadAllText(report)).RootElement.Clone() : default;
        return (p.ExitCode, output, json);
    }

    [Fact]
    public void Two_worker_processes_train_and_match_the_in_process_run()
    {
        var data = WriteData();
        var (exit, output, report) = Train(data, "--workers", "2");
        Assert.True(exit == 0, output);
        Assert.Equal(2, report.GetProperty("workers").GetInt32());
        Assert.True(report.GetProperty("replicas_consistent").GetBoolean());
        Assert.Contains("[local-1] worker local-1 joining", output);
        Assert.Contains("[local-2] worker local-2 joining", output);

        var (exit2, output2, inProcess) = Train(data, "--workers", "3", "--in-process");
        Assert.True(exit2 == 0, output2);
        Assert.Equal(report.GetProperty("parameter_sha256").GetString(), inProcess.GetProperty("parameter_sha256").GetString());
    }
}
