using System.Diagnostics;
using System.Text.Json;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// SIGTERM ends a run within a bounded time even when the step in flight cannot finish: here a
/// worker process is frozen with SIGSTOP mid-run, so its step hangs until the failure detector
/// would notice it; --stop-grace 2 ends the run first, with the last state the coordinator holds
/// checkpointed, exit 4 and a true report.
public sealed class SignalProcessTests : ProcessTests
{
    static void Signal(string signal, int pid)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { $"-{signal}", pid.ToString() }, UseShellExecute = false })!;
        kill.WaitForExit();
    }

    /// The local worker processes a coordinator started: `disttrain worker --coordinator 127.0.0.1:PORT ...`.
    static List<int> WorkersOf(int coordinatorPort) =>
        [.. Directory.GetDirectories("/proc").Select(d => Path.GetFileName(d)).Where(n => n.All(char.IsDigit)).Select(int.Parse).Where(pid =>
        {
            try { return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Contains($"worker --coordinator 127.0.0.1:{coordinatorPort} "); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        })];

    [Fact]
    public void Sigterm_ends_a_run_whose_step_cannot_finish_within_the_grace()
    {
        string data = WriteData();
        int port = Ports.Free();
        string report = Dir["r.json"], checkpoints = Dir["ck"];
        var psi = DisttrainProcess.StartInfo(["train", "--data", data, "--workers", "2", "--port", port.ToString(), "--batch", "16", "--epochs", "200",
                                              "--checkpoint-dir", checkpoints, "--checkpoint-every", "10", "--stop-grace", "2", "--report", report, "--progress", "plain"]);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        List<int> workers = [];
        try
        {
            // Until a checkpoint exists (training is under way), then freeze one worker and signal.
            Assert.True(SpinWait.SpinUntil(() => Directory.Exists(checkpoints) && Directory.GetFiles(checkpoints, "*.safetensors").Length > 0, Patience.Training),
                        "no checkpoint within the patience");
            workers = WorkersOf(port);
            Assert.Equal(2, workers.Count);
            Signal("STOP", workers[0]);
            Thread.Sleep(300);
            var clock = Stopwatch.StartNew();
            Signal("TERM", p.Id);
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), "the run did not end within 60 s of SIGTERM");
            string output = stdout.Result + stderr.Result;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"SIGTERM took {clock.Elapsed.TotalSeconds:F1} s: {output}");
            Assert.Equal(4, p.ExitCode);
            Assert.Contains("did not finish within 2 s of the signal", output);
            var json = JsonDocument.Parse(File.ReadAllText(report)).RootElement;
            Assert.Equal("interrupted", json.GetProperty("status").GetString());
            Assert.True(json.GetProperty("steps").GetInt64() >= 10);
            Assert.NotEmpty(Directory.GetFiles(checkpoints, "*.safetensors"));
        }
        finally
        {
            foreach (int w in workers) { Signal("CONT", w); Signal("KILL", w); }
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
    }
}
