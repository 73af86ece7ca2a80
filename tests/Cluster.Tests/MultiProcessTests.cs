using System.Diagnostics;
using System.Text.Json;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// A coordinator and worker processes on loopback, started through the real command line.
public sealed class MultiProcessTests : ProcessTests
{
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

    [Theory]
    [InlineData("cifar")]
    [InlineData("images")]
    public void Colour_images_train_with_a_worker_process_that_holds_no_data_and_match_the_in_process_run(string format)
    {
        // A CIFAR-10 folder or an image folder of PNGs; the remote worker is started without --data, so every step's samples
        // (3 x 32 x 32 bytes each) are shipped to it and normalised with the job's per-channel
        // statistics, and augmented as their sample index (not their row in the shipped batch) says.
        var colours = CifarFolder.Synthetic(320, 64, seed: 7);
        var data = format == "cifar" ? CifarFolder.Write(Dir["cifar"], colours, DistTrain.Cnn.Data.CifarFile.Cifar10)
            : ImageFolderWriter.Write(Dir["images"], colours, [.. Enumerable.Range(0, 10).Select(c => $"class-{c}")]);
        var (exit, output, inProcess) = Train(data, "--workers", "2", "--in-process", "--batch", "32", "--augment", "crop:4,flip");
        Assert.True(exit == 0, output);

        var report = Dir["dataless.json"];
        int port = Ports.Free();
        var psi = DisttrainProcess.StartInfo(["train", "--data", data, "--seed", "5", "--max-steps", "8", "--batch", "32", "--augment", "crop:4,flip", "--workers", "1", "--remote-workers", "1",
                                              "--port", port.ToString(), "--worker-wait", "120", "--report", report]);
        psi.Environment["DISTTRAIN_JOB_TOKEN"] = "dataless-test";
        using var coordinator = Process.Start(psi)!;
        var coordinatorOutput = coordinator.StandardOutput.ReadToEndAsync();
        var coordinatorErrors = coordinator.StandardError.ReadToEndAsync();
        var worker = DisttrainProcess.StartInfo(["worker", "--coordinator", $"127.0.0.1:{port}", "--threads", "1", "--name", "no-data", "--join-timeout", "60"]);
        worker.Environment["DISTTRAIN_JOB_TOKEN"] = "dataless-test";
        var (workerExit, workerOutput) = Processes.RunToExit(worker, Patience.Training);
        Assert.True(coordinator.WaitForExit(Patience.Helper));
        string log = coordinatorOutput.Result + coordinatorErrors.Result;
        Assert.True(workerExit == 0, workerOutput + log);
        Assert.True(coordinator.ExitCode == 0, log);
        using var doc = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(2, doc.RootElement.GetProperty("workers").GetInt32());
        Assert.Equal(inProcess.GetProperty("parameter_sha256").GetString(), doc.RootElement.GetProperty("parameter_sha256").GetString());
    }

    /// KILL: the process is gone; its closed connections are noticed at once and confirmed by a
    /// refused probe. STOP: frozen, it keeps its connections and its listening port, so only the
    /// heartbeat failure detector can notice it, and the probe must never take it for gone.
    [Theory]
    [InlineData("KILL")]
    [InlineData("STOP")]
    public void A_worker_process_killed_or_frozen_mid_run_is_replaced_by_a_later_one_and_the_result_is_the_fault_free_one(string signal)
    {
        var data = WriteData();
        // 40 epochs of 10 steps: long enough that the replacement, started right after the kill,
        // joins before the end even though the survivors train on during its start-up. The
        // fault-free reference trains meanwhile: the cluster run spends much of its time waiting.
        var referenceRun = Task.Run(() => Train(data, "--workers", "2", "--in-process", "--epochs", "40", "--max-steps", "400"));

        var report = Dir["chaos.json"];
        int port = Ports.Free();
        const string token = "multi-process-test-token";
        var psi = DisttrainProcess.StartInfo(["train", "--data", data, "--seed", "5", "--epochs", "40", "--max-steps", "400", "--workers", "3", "--port", port.ToString(), "--report", report]);
        psi.Environment["DISTTRAIN_JOB_TOKEN"] = token;
        using var coordinator = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        var started = new ManualResetEventSlim();
        void Collect(object? _, DataReceivedEventArgs e)
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (e.Data.StartsWith("generation 1:", StringComparison.Ordinal)) started.Set();
        }
        coordinator.OutputDataReceived += Collect;
        coordinator.ErrorDataReceived += Collect;
        coordinator.BeginOutputReadLine();
        coordinator.BeginErrorReadLine();
        Process? replacement = null;
        try
        {
            Assert.True(started.Wait(Patience.Training), "training did not start: " + output);
            // A member still joining the cluster when killed can be reported Terminated as fast as
            // the probe answers; killed once it is up, only the probe is fast. Members are up
            // within a second or two of joining; 5 s leaves room for a loaded machine.
            Thread.Sleep(TimeSpan.FromSeconds(5));
            int victim = WorkerProcesses(port).First();
            var victimArgs = File.ReadAllText($"/proc/{victim}/cmdline").Split('\0');
            string victimName = victimArgs[Array.IndexOf(victimArgs, "--name") + 1];
            Process.Start("kill", [$"-{signal}", victim.ToString()])!.WaitForExit();   // no goodbye either way
            var join = DisttrainProcess.StartInfo(["worker", "--coordinator", $"127.0.0.1:{port}", "--data", data, "--threads", "1", "--name", "latecomer"]);
            join.Environment["DISTTRAIN_JOB_TOKEN"] = token;
            replacement = Process.Start(join)!;
            Assert.True(coordinator.WaitForExit(Patience.Training), "training did not finish in 3 minutes: " + output);
            coordinator.WaitForExit();   // drains the output
            string log;
            lock (output) log = output.ToString();
            Assert.True(coordinator.ExitCode == 0, log);
            var json = JsonDocument.Parse(File.ReadAllText(report)).RootElement;
            var (refExit, refOutput, reference) = referenceRun.Result;
            Assert.True(refExit == 0, refOutput);
            Assert.Equal(reference.GetProperty("parameter_sha256").GetString(), json.GetProperty("parameter_sha256").GetString());
            Assert.True(json.GetProperty("worker_failures").GetInt32() >= 1, log);
            Assert.True(json.GetProperty("redone_steps").GetInt64() >= 1, log);
            // Noticed by the closed connection, confirmed by the refused probe, not by the heartbeat detector.
            var lost = Assert.Single(log.Split('\n'), l => l.StartsWith($"lost worker {victimName} "));
            Assert.True(signal == "KILL" == lost.Contains("nothing listens at its address any more"), log);
            Assert.Contains("worker latecomer joined mid-run", log);
            Assert.Contains(log.Split('\n'), l => l.StartsWith("generation ") && l.Contains("latecomer"));   // it entered a ring
        }
        finally
        {
            foreach (var pid in WorkerProcesses(port)) try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { }
            if (replacement is { HasExited: false }) replacement.Kill();
            if (!coordinator.HasExited) coordinator.Kill(entireProcessTree: true);
            try { referenceRun.Wait(Patience.Training); } catch (AggregateException) { }   // before its folder goes
        }
    }

    /// The worker processes the coordinator on `port` started, by their command lines.
    static IEnumerable<int> WorkerProcesses(int port) =>
        Directory.GetDirectories("/proc").Select(d => int.TryParse(Path.GetFileName(d), out int pid) ? pid : -1).Where(pid => pid > 0)
            .Where(pid =>
            {
                try { var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0'); return args.Contains("worker") && args.Contains($"127.0.0.1:{port}") && args.Any(a => a.StartsWith("local-")); }
                catch (IOException) { return false; }
                catch (UnauthorizedAccessException) { return false; }
            })
            .ToList();
}
