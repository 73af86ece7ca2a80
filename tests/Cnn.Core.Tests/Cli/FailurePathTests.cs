using System.Net;
using System.Net.Sockets;
using DistTrain.Cnn.Checkpoints;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Cli;

/// The command line's failure paths a user can walk into: ports already taken, outputs that cannot
/// be written, numbers that overflow in a model file, a checkpoint whose embedded model is invalid.
/// Each is one line naming the input and the documented exit code, never a stack trace.
public class FailurePathTests
{
    /// `train` and `eval` report on stderr; a worker's log is its stdout, which its coordinator relays.
    static void OneLine(string args, int expectedExit, string expected, (int exit, string stdout, string stderr) run)
    {
        Assert.True(run.exit == expectedExit, $"{args}: exit {run.exit}, expected {expectedExit}: {run.stdout}{run.stderr}");
        string report = args.StartsWith("worker ") ? run.stdout + run.stderr : run.stderr;
        Assert.Contains(expected, report);
        Assert.Single(report.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("   at ", run.stderr + run.stdout);
    }

    [Fact]
    public void Ports_already_taken_and_outputs_that_cannot_be_written_are_one_line_and_exit_2_before_training()
    {
        using var dir = new TempFolder("failure-paths");
        string data = CliHarness.IdxFolder(dir.Path, train: 64, test: 16, seed: 1);
        var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        string port = ((IPEndPoint)taken.LocalEndpoint).Port.ToString();
        File.WriteAllText(dir["a-file"], "not a folder");
        File.WriteAllText(dir["token"], "a-job-token");
        File.WriteAllText(dir["overflow.json"], """{"name": "x", "input": [1, 28, 28], "layers": [{"type": "dense", "units": 99999999999}]}""");
        File.WriteAllText(dir["float.json"], """{"name": "x", "input": [1, 28, 28], "layers": [{"type": "dense", "units": 1e40}]}""");
        File.WriteAllText(dir["deep.json"], new string('[', 100_000));
        try
        {
            foreach (var (args, exit, expected) in new (string[], int, string)[]
            {
                (["train", "--data", data, "--port", port, "--max-steps", "1"], 2, $"--port {port}: "),
                (["train", "--data", data, "--in-process", "--status-port", port, "--max-steps", "1"], 2, $"--status-port {port}"),
                (["worker", "--coordinator", "127.0.0.1:9", "--token-file", dir["token"], "--port", port], 2, $"--port {port}: "),
                (["worker", "--coordinator", "127.0.0.1:9", "--token-file", dir["token"], "--data-port", port], 2, $"--data-port"),
                (["train", "--data", data, "--in-process", "--report", dir["a-file/r.json"], "--max-steps", "1"], 2, "--report"),
                (["train", "--data", data, "--in-process", "--metrics", dir["a-file/m.jsonl"], "--max-steps", "1"], 2, "--metrics"),
                (["train", "--data", data, "--in-process", "--checkpoint-dir", dir["a-file"], "--max-steps", "1"], 2, "--checkpoint-dir"),
                (["train", "--data", data, "--in-process", "--tensorboard", dir["a-file"], "--max-steps", "1"], 2, "--tensorboard"),
                (["train", "--data", data, "--in-process", "--model", dir["overflow.json"]], 2, "overflow.json: not a valid model description"),
                (["train", "--data", data, "--in-process", "--model", dir["float.json"]], 2, "float.json: not a valid model description"),
                (["train", "--data", data, "--in-process", "--model", dir["deep.json"]], 2, "deep.json: not a valid model description"),
            })
                OneLine(string.Join(" ", args), exit, expected, CliHarness.Run(args));
        }
        finally { taken.Stop(); }
    }

    /// A checkpoint whose tensors are intact but whose embedded model description is not valid
    /// (metadata is outside the tensors' SHA-256) is corrupt: `eval` says so in one line, and
    /// `--resume` skips it for the next newest. A description of a huge model is refused from the
    /// tensors it would need, before anything is allocated for it.
    [Fact]
    public void A_checkpoint_with_an_invalid_embedded_model_is_one_line_for_eval_and_skipped_by_resume()
    {
        using var dir = new TempFolder("bad-spec");
        string data = CliHarness.IdxFolder(dir.Path, train: 64, test: 16, seed: 2);
        string ckpt = dir["ckpt"];
        Assert.Equal(0, CliHarness.Run("train", "--data", data, "--batch", "16", "--epochs", "1", "--in-process", "--checkpoint-dir", ckpt).exit);
        string good = Assert.Single(Directory.GetFiles(ckpt));
        var file = SafeTensorsFile.Read(good);

        foreach (var (spec, expected) in new (string, string)[]
        {
            ("""{"name": "x", "input": [1, 28, 28], "layers": [null]}""", "layer 1 is null"),
            ("""{"name": "x", "input": [1, 28, 28], "layers": [{"type": "dense", "units": 1e40}]}""", "not a valid model description"),
            ("not json at all", "not a valid model description"),
            ("""{"name": "huge", "input": [1, 28, 28], "layers": [{"type": "dense", "units": 1000000}, {"type": "dense", "units": 10}]}""",
             "its model has 795,000,010 parameters, the file's tensors hold 61,706"),
        })
        {
            string bad = Path.Combine(ckpt, "step-00000099.safetensors");
            var metadata = file.Metadata.ToDictionary();
            metadata["model"] = spec;
            SafeTensorsFile.Write(bad, [.. file.Tensors.Select(t => (t.Name, t.Shape, (ReadOnlyMemory<float>)t.Data))], metadata);

            OneLine("eval", 2, expected, CliHarness.Run("eval", "--checkpoint", bad, "--data", data));
            var (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--batch", "16", "--epochs", "2", "--in-process", "--checkpoint-dir", ckpt, "--resume", "--max-steps", "5");
            Assert.True(exit == 0, stdout + stderr);
            Assert.Contains("warning: skipping checkpoint", stdout);
            Assert.Contains(expected, stdout);
            Assert.Contains("resumed at step 4", stdout);
            File.Delete(bad);
            foreach (var f in Directory.GetFiles(ckpt).Where(f => f != good)) File.Delete(f);
        }
    }
}
