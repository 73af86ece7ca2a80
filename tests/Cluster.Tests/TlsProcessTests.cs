using System.Diagnostics;
using System.Text.Json;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// TLS with mutual authentication between processes. A class of its own so that it runs beside
/// MultiProcessTests: it spends most of its time waiting for refused workers to give up.
public sealed class TlsProcessTests : ProcessTests
{
    string MakeCerts(string dir, params string[] nodes) => Certificates.Make(Dir[dir], nodes);

    [Fact]
    public void Over_TLS_only_nodes_with_a_certificate_from_the_jobs_CA_take_part_and_the_result_is_unchanged()
    {
        var data = WriteData();
        string certs = MakeCerts("certs", "coordinator", "worker-a");
        string rogue = MakeCerts("rogue", "worker-r");   // a different CA
        var (plainExit, plainOutput, plain) = Train(data, "--workers", "1", "--in-process");
        Assert.True(plainExit == 0, plainOutput);

        string report = Dir["tls.json"];
        int port = Ports.Free();
        var psi = DisttrainProcess.StartInfo(["train", "--data", data, "--seed", "5", "--max-steps", "8", "--workers", "1", "--remote-workers", "1", "--port", port.ToString(),
            "--tls-cert", Path.Combine(certs, "coordinator.pfx"), "--tls-ca", Path.Combine(certs, "ca.crt"), "--worker-wait", "120", "--report", report]);
        psi.Environment["DISTTRAIN_JOB_TOKEN"] = "tls-test";
        using var coordinator = Process.Start(psi)!;
        var coordinatorOutput = coordinator.StandardOutput.ReadToEndAsync();
        var coordinatorErrors = coordinator.StandardError.ReadToEndAsync();
        try
        {
            ProcessStartInfo Worker(string name, params string[] tls)
            {
                var w = DisttrainProcess.StartInfo(new[] { "worker", "--coordinator", $"127.0.0.1:{port}", "--data", data, "--threads", "1", "--name", name, "--join-timeout", "6" }.Concat(tls));
                w.Environment["DISTTRAIN_JOB_TOKEN"] = "tls-test";   // the right token: only TLS stands in the way
                return w;
            }
            var (rogueExit, rogueOutput) = Processes.RunToExit(Worker("rogue", "--tls-cert", Path.Combine(rogue, "worker-r.pfx"), "--tls-ca", Path.Combine(rogue, "ca.crt")), Patience.Helper);
            Assert.True(rogueExit == 4, rogueOutput);
            // Akka.Remote shuts the worker's system down on the refused handshake, or the join times out first.
            Assert.Matches("worker rogue: (the connection to the coordinator failed|no answer from the coordinator)", rogueOutput);
            var (plainWorkerExit, plainWorkerOutput) = Processes.RunToExit(Worker("cleartext"), Patience.Helper);
            Assert.True(plainWorkerExit == 4, plainWorkerOutput);   // a cleartext worker cannot speak to a TLS coordinator
            Assert.Contains("worker cleartext: ", plainWorkerOutput);

            var (goodExit, goodOutput) = Processes.RunToExit(Worker("trusted", "--tls-cert", Path.Combine(certs, "worker-a.pfx"), "--tls-ca", Path.Combine(certs, "ca.crt")), Patience.Training);
            Assert.True(goodExit == 0, goodOutput);
            Assert.True(coordinator.WaitForExit(Patience.Helper));
            string log = coordinatorOutput.Result + coordinatorErrors.Result;
            Assert.True(coordinator.ExitCode == 0, log);
            // The ring's chunks took the TLS data plane: both workers listen on one, and no link
            // fell back to Akka.Remote (each would say "data plane: ...").
            Assert.Matches("worker trusted joining .* over TLS; gradients on data port [0-9]+", goodOutput);
            Assert.Matches(@"\[local-1\] worker local-1 joining .* over TLS; gradients on data port [0-9]+", log);
            Assert.DoesNotContain("data plane:", log + goodOutput);
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
