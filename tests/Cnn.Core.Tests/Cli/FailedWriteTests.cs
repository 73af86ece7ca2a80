using System.Text.Json;
using DistTrain.Cnn.Training;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Cli;

/// A write that fails inside a run (a full disk, a path taken by something else) used to restart
/// the coordinator actor and lose the training state. Now: one line naming the path and the OS
/// error; metrics are given up and training goes on; a checkpoint that cannot be written stops
/// the run (exit 4) keeping the checkpoints before it, and the report tells the steps done.
public class FailedWriteTests
{
    [Fact]
    public void A_checkpoint_that_cannot_be_written_stops_the_run_with_exit_4_and_a_true_report()
    {
        using var dir = new TempFolder("failed-checkpoint");
        string data = CliHarness.IdxFolder(dir.Path, train: 256, test: 32, seed: 4);
        string checkpoints = dir["ck"];
        // The name of step 4's checkpoint is taken by a folder: its rename fails like a full disk's write.
        Directory.CreateDirectory(Path.Combine(checkpoints, "step-00000004.safetensors"));
        var (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--batch", "16", "--max-steps", "10",
                                                    "--checkpoint-dir", checkpoints, "--checkpoint-every", "2", "--report", dir["r.json"]);
        Assert.True(exit == 4, $"exit {exit}: {stdout}{stderr}");
        Assert.Contains("error: the checkpoint of step 4 could not be written", stdout);
        Assert.Contains("step-00000004.safetensors", stdout);
        var report = JsonDocument.Parse(File.ReadAllText(dir["r.json"])).RootElement;
        Assert.Equal("failed", report.GetProperty("status").GetString());
        Assert.Equal(4, report.GetProperty("steps").GetInt64());
        Assert.Matches("^[0-9a-f]{64}$", report.GetProperty("parameter_sha256").GetString());
        // The checkpoint before it is kept and loads; nothing half-written is left.
        Assert.Equal(2, TrainingCheckpoint.Load(Path.Combine(checkpoints, "step-00000002.safetensors")).Step);
        Assert.Empty(Directory.GetFiles(checkpoints, "*.tmp-*"));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp*"));

        // The same 4 steps run without the obstacle and stopped there by --max-steps 4 differ only in the
        // learning-rate schedule, so compare with a resume instead: the kept checkpoint continues.
        Directory.Delete(Path.Combine(checkpoints, "step-00000004.safetensors"));
        (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--batch", "16", "--max-steps", "10",
                                                "--checkpoint-dir", checkpoints, "--checkpoint-every", "2", "--resume");
        Assert.True(exit == 0, stdout + stderr);
        Assert.Contains("resumed at step 2", stdout);
    }

    /// --lr 1e300: the one step's loss is finite, the update makes the parameters infinite. That run
    /// used to end "completed" with exit 0 and a checkpoint of them; now it is diverged, exit 3,
    /// and no checkpoint of the infinite state is written.
    [Fact]
    public void Non_finite_final_parameters_are_a_divergence_and_are_not_checkpointed()
    {
        using var dir = new TempFolder("non-finite");
        string data = CliHarness.IdxFolder(dir.Path, train: 128, test: 32, seed: 4);
        var (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--batch", "16", "--max-steps", "1", "--lr", "1e300",
                                                    "--warmup", "0", "--checkpoint-dir", dir["ck"], "--report", dir["r.json"]);
        Assert.True(exit == 3, $"exit {exit}: {stdout}{stderr}");
        Assert.Contains("the parameters after step 1 hold", stdout);
        Assert.Equal("diverged", JsonDocument.Parse(File.ReadAllText(dir["r.json"])).RootElement.GetProperty("status").GetString());
        Assert.Empty(Directory.Exists(dir["ck"]) ? Directory.GetFiles(dir["ck"], "*.safetensors") : []);
    }

    [Fact]
    public void A_metrics_file_that_cannot_be_written_is_one_warning_and_training_goes_on()
    {
        Assert.True(File.Exists("/dev/full"), "this test writes to /dev/full (Linux)");
        using var dir = new TempFolder("failed-metrics");
        string data = CliHarness.IdxFolder(dir.Path, train: 256, test: 32, seed: 4);
        var (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--batch", "16", "--epochs", "3",
                                                    "--metrics", "/dev/full", "--report", dir["r.json"]);
        Assert.True(exit == 0, $"exit {exit}: {stdout}{stderr}");
        Assert.Contains("warning: --metrics", stdout);
        Assert.Contains("No space left on device", stdout);
        Assert.DoesNotContain("   at ", stdout + stderr);
        Assert.Equal("completed", JsonDocument.Parse(File.ReadAllText(dir["r.json"])).RootElement.GetProperty("status").GetString());
        Assert.Equal(48, JsonDocument.Parse(File.ReadAllText(dir["r.json"])).RootElement.GetProperty("steps").GetInt64());
    }
}
