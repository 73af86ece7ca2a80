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

    static ProcessStartInfo Disttrain(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    (int Exit, string Output, JsonElement Report) Train(string data, params string[] extra)
    {
        var report = Path.Combine(_dir, $"r{Guid.NewGuid():N}.json");
        using var p = Process.Start(Disttrain(new[] { "train", "--data", data, "--seed", "5", "--report", report }
            .Concat(extra.Contains("--max-steps") ? extra : [.. extra, "--max-steps", "8"])))!;
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

    [Fact]
    public void A_worker_process_killed_mid_run_is_replaced_by_a_later_one_and_the_result_is_the_fault_free_one()
    {
        var data = WriteData();
        // 40 epochs of 10 steps: long enough that the replacement, started right after the kill,
        // joins before the end even though the survivors train on during its start-up.
        var (refExit, refOutput, reference) = Train(data, "--workers", "2", "--in-process", "--epochs", "40", "--max-steps", "400");
        Assert.True(refExit == 0, refOutput);

        var report = Path.Combine(_dir, "chaos.json");
        int port = FreePort();
        const string token = "multi-process-test-token";
        var psi = Disttrain(["train", "--data", data, "--seed", "5", "--epochs", "40", "--max-steps", "400", "--workers", "3", "--port", port.ToString(), "--report", report]);
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
            Assert.True(started.Wait(TimeSpan.FromMinutes(2)), "training did not start: " + output);
            int victim = WorkerProcesses(port).First();
            Process.GetProcessById(victim).Kill();   // SIGKILL: no goodbye, the cluster's failure detector must notice
            var join = Disttrain(["worker", "--coordinator", $"127.0.0.1:{port}", "--data", data, "--threads", "1", "--name", "latecomer"]);
            join.Environment["DISTTRAIN_JOB_TOKEN"] = token;
            replacement = Process.Start(join)!;
            Assert.True(coordinator.WaitForExit(TimeSpan.FromMinutes(3)), "training did not finish in 3 minutes: " + output);
            coordinator.WaitForExit();   // drains the output
            string log;
            lock (output) log = output.ToString();
            Assert.True(coordinator.ExitCode == 0, log);
            var json = JsonDocument.Parse(File.ReadAllText(report)).RootElement;
            Assert.Equal(reference.GetProperty("parameter_sha256").GetString(), json.GetProperty("parameter_sha256").GetString());
            Assert.True(json.GetProperty("worker_failures").GetInt32() >= 1, log);
            Assert.True(json.GetProperty("redone_steps").GetInt64() >= 1, log);
            Assert.Contains("worker latecomer joined mid-run", log);
            Assert.Contains(log.Split('\n'), l => l.StartsWith("generation ") && l.Contains("latecomer"));   // it entered a ring
        }
        finally
        {
            foreach (var pid in WorkerProcesses(port)) try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { }
            if (replacement is { HasExited: false }) replacement.Kill();
            if (!coordinator.HasExited) coordinator.Kill(entireProcessTree: true);
        }
    }

    static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
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

    static (int Exit, string Output) RunToExit(ProcessStartInfo psi, TimeSpan timeout)
    {
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(entireProcessTree: true); Assert.Fail($"{psi.ArgumentList[1]} did not exit within {timeout}"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    string MakeCerts(string dir, params string[] nodes)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(RepositoryRoot(), "deploy", "make-certs.sh"));
        foreach (var a in new[] { "--out", Path.Combine(_dir, dir) }.Concat(nodes)) psi.ArgumentList.Add(a);
        var (exit, output) = RunToExit(psi, TimeSpan.FromMinutes(1));
        Assert.True(exit == 0, output);
        return Path.Combine(_dir, dir);
    }

    static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "DistTrain.sln"))) return d.FullName;
        throw new InvalidOperationException("DistTrain.sln not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void Over_TLS_only_nodes_with_a_certificate_from_the_jobs_CA_take_part_and_the_result_is_unchanged()
    {
        var data = WriteData();
        string certs = MakeCerts("certs", "coordinator", "worker-a");
        string rogue = MakeCerts("rogue", "worker-r");   // a different CA
        var (plainExit, plainOutput, plain) = Train(data, "--workers", "1", "--in-process");
        Assert.True(plainExit == 0, plainOutput);

        string report = Path.Combine(_dir, "tls.json");
        int port = FreePort();
        var psi = Disttrain(["train", "--data", data, "--seed", "5", "--max-steps", "8", "--workers", "1", "--remote-workers", "1", "--port", port.ToString(),
            "--tls-cert", Path.Combine(certs, "coordinator.pfx"), "--tls-ca", Path.Combine(certs, "ca.crt"), "--worker-wait", "120", "--report", report]);
        psi.Environment["DISTTRAIN_JOB_TOKEN"] = "tls-test";
        using var coordinator = Process.Start(psi)!;
        var coordinatorOutput = coordinator.StandardOutput.ReadToEndAsync();
        var coordinatorErrors = coordinator.StandardError.ReadToEndAsync();
        try
        {
            ProcessStartInfo Worker(string name, params string[] tls)
            {
                var w = Disttrain(new[] { "worker", "--coordinator", $"127.0.0.1:{port}", "--data", data, "--threads", "1", "--name", name, "--join-timeout", "6" }.Concat(tls));
                w.Environment["DISTTRAIN_JOB_TOKEN"] = "tls-test";   // the right token: only TLS stands in the way
                return w;
            }
            var (rogueExit, rogueOutput) = RunToExit(Worker("rogue", "--tls-cert", Path.Combine(rogue, "worker-r.pfx"), "--tls-ca", Path.Combine(rogue, "ca.crt")), TimeSpan.FromMinutes(1));
            Assert.True(rogueExit == 4, rogueOutput);
            // Akka.Remote shuts the worker's system down on the refused handshake, or the join times out first.
            Assert.Matches("worker rogue: (the connection to the coordinator failed|no answer from the coordinator)", rogueOutput);
            var (plainWorkerExit, plainWorkerOutput) = RunToExit(Worker("cleartext"), TimeSpan.FromMinutes(1));
            Assert.True(plainWorkerExit == 4, plainWorkerOutput);   // a cleartext worker cannot speak to a TLS coordinator
            Assert.Contains("worker cleartext: ", plainWorkerOutput);

            var (goodExit, goodOutput) = RunToExit(Worker("trusted", "--tls-cert", Path.Combine(certs, "worker-a.pfx"), "--tls-ca", Path.Combine(certs, "ca.crt")), TimeSpan.FromMinutes(2));
            Assert.True(goodExit == 0, goodOutput);
            Assert.True(coordinator.WaitForExit(TimeSpan.FromMinutes(1)));
            string log = coordinatorOutput.Result + coordinatorErrors.Result;
            Assert.True(coordinator.ExitCode == 0, log);
            Assert.DoesNotContain("worker rogue joined", log);
            Assert.DoesNotContain("worker cleartext joined", log);
            var json = JsonDocument.Parse(File.ReadAllText(report)).RootElement;
            Assert.Equal(plain.GetProperty("parameter_sha256").GetString(), json.GetProperty("parameter_sha256").GetString());
        }
        finally
        {
            if (!coordinator.HasExited) coordinator.Kill(entireProcessTree: true);
        }
    }
}
