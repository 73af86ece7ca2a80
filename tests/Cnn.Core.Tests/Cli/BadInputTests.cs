using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Cli;

/// Inputs that used to end in a stack trace (exit 134) or a run of 0 steps with exit 0: each is
/// now one line on stderr naming the input, and exit 2, before any process starts.
public class BadInputTests
{
    [Fact]
    public void Each_bad_input_is_one_line_and_exit_2()
    {
        using var dir = new TempFolder("bad-input");
        string data = CliHarness.IdxFolder(dir.Path, train: 64, test: 16, seed: 1);
        File.WriteAllText(dir["null-layer.json"], """{"name": "x", "input": [1, 28, 28], "layers": [null]}""");
        File.WriteAllText(dir["null-layers.json"], """{"name": "x", "input": [1, 28, 28], "layers": null}""");
        // A dense layer of 10^6 units: about 6 GB a copy of its parameters, 40 GB for a run.
        File.WriteAllText(dir["huge.json"], """{"name": "huge", "input": [1, 28, 28], "layers": [{"type": "dense", "units": 1000000}, {"type": "dense", "units": 10}]}""");
        File.WriteAllText(dir["no-type.json"], """{"name": "x", "input": [1, 28, 28], "layers": [{"units": 10}]}""");
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["train", "--data", data, "--host", "not-an-address", "--max-steps", "1"], "--host not-an-address: not an IP address or a host name that resolves"),
            (["train", "--data", data, "--host", "192.0.2.1", "--max-steps", "1"], "--host 192.0.2.1: 192.0.2.1 is not an address of this machine"),
            (["worker", "--host", "not-an-address", "--coordinator", "127.0.0.1:9"], "--host not-an-address: not an IP address"),
            (["train", "--data", data, "--model", dir["null-layer.json"], "--in-process"], "layer 1 is null"),
            (["train", "--data", data, "--model", dir["null-layers.json"], "--in-process"], "\"layers\" must be a list of layers, got null"),
            (["train", "--data", data, "--model", dir["no-type.json"], "--in-process"], "missing required properties including: 'type'"),
            (["train", "--data", data, "--batch", "128", "--in-process"], "--batch 128: larger than the 64 training samples"),
            (["train", "--data", data, "--model", dir["huge.json"], "--in-process", "--memory-budget", "16G"], "model huge (795,000,010 parameters) needs about"),
            (["train", "--data", data, "--model", "mnist-cnn", "--in-process", "--memory-budget", "10M"], "more than --memory-budget 10 MiB"),
            (["train", "--data", data, "--memory-budget", "lots"], "--memory-budget: expected a size such as 800M or 16G, got 'lots'"),
        })
        {
            var (exit, stdout, stderr) = CliHarness.Run(args);
            Assert.True(exit == 2, $"{string.Join(" ", args)}: exit {exit}: {stdout}{stderr}");
            Assert.Contains(expected, stderr);
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.DoesNotContain("   at ", stderr);
        }
    }
}
