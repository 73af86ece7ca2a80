using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Akka.Event;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator;
using DistTrain.Coordinator.Cli;
using DistTrain.Coordinator.Cluster;
using DistTrain.Coordinator.Reporting;
using DistTrain.Protocol;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Cli;

/// What a user sees of a run: --help, plain progress lines, the status endpoint, the plots, and
/// Akka's log lines.
public sealed class UserViewTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-view-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static (int exit, string stdout, string stderr) Run(params string[] args) => CliHarness.Run(args);

    [Theory]
    [InlineData("train", "--batch <B>", "[default: 64]", "--workers <N>", "[default: 1]", "--allreduce <ALG>", "[default: ring]", "--status-port <P>", "--progress <MODE>")]
    [InlineData("worker", "--coordinator <HOST:PORT>", "--join-timeout <SECS>", "[default: 60]", "--threads <T>")]
    [InlineData("eval", "--checkpoint <FILE>", "--batch <B>", "[default: 500]")]
    [InlineData("plot", "--metrics <FILE.jsonl>", "--out <PREFIX>")]
    public void Help_of_each_command_lists_its_options_and_defaults(string command, params string[] expected)
    {
        var (exit, stdout, stderr) = Run(command, "--help");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        foreach (var text in expected) Assert.Contains(text, stdout);
    }

    [Fact]
    public void No_command_prints_the_commands_and_exits_2()
    {
        var (exit, stdout, _) = Run();
        Assert.Equal(2, exit);
        foreach (var c in new[] { "train", "worker", "eval", "plot" }) Assert.Contains(c, stdout);
        (exit, _, var stderr) = Run("frobnicate");
        Assert.Equal(2, exit);
        Assert.Equal("disttrain: unknown command 'frobnicate' (see disttrain --help)", stderr.Trim());
    }

    [Fact]
    public void Plots_are_drawn_once_per_step_and_a_bad_line_is_named()
    {
        var metrics = Path.Combine(_dir, "m.jsonl");
        var lines = new List<string>();
        for (int step = 1; step <= 30; step++)
            lines.Add($$"""{"event":"step","step":{{step}},"epoch":1,"loss":{{3.0 / step}},"accuracy":{{step / 30.0}},"lr":0.1,"images_per_second":100}""");
        // Steps 11-15 redone after a resume: written a second time.
        for (int step = 11; step <= 15; step++)
            lines.Add($$"""{"event":"step","step":{{step}},"epoch":1,"loss":0.5,"accuracy":0.5,"lr":0.1,"images_per_second":100}""");
        lines.Add("""{"event":"epoch","epoch":1,"step":30,"train_loss":0.4,"train_accuracy":0.8,"test_loss":null,"test_accuracy":0.9,"seconds":1,"images_per_second":100}""");
        File.WriteAllLines(metrics, lines);

        var written = RunPlots.Write(metrics, Path.Combine(_dir, "plots", "run"));
        Assert.Equal(30, written.Steps);
        Assert.Equal(1, written.Epochs);
        foreach (var png in new[] { written.LossPng, written.AccuracyPng }) AssertPng(png, 1000, 600);

        File.AppendAllLines(metrics, ["{\"event\":\"step\",\"step\":"]);
        var e = Assert.Throws<BadInputException>(() => RunPlots.Write(metrics, Path.Combine(_dir, "again")));
        Assert.Contains("m.jsonl: line 37", e.Message);
    }

    [Fact]
    public void Status_endpoint_serves_json_and_prometheus_metrics_of_the_run()
    {
        var status = new TrainingStatus("lenet5", epochs: 2, totalSteps: 100, stepsPerEpoch: 50);
        status.Event("worker a joined (1/2, reads its own copy of the data)");
        status.Event("worker b joined (2/2, reads its own copy of the data)");
        for (int step = 1; step <= 10; step++)
            status.Step(new StepReport(step, 100, 0, 0.5, 0.75, 0.01, 0),
                        new StepTiming(0.1, 0.05, 0.03, [new WorkerShare("a", 32, 0.05), new WorkerShare("b", 32, 0.08)], 0));
        status.Event("lost worker b at step 11; 1 left");
        status.Step(new StepReport(11, 100, 0, 0.25, 1.0, 0.01, 0), new StepTiming(0.1, 0.05, 0.03, [new WorkerShare("a", 64, 0.1)], 0));

        using var server = StatusServer.Start(status, "127.0.0.1", Ports.Free());
        using var http = new HttpClient();
        using var json = JsonDocument.Parse(http.GetStringAsync(server.Url + "status").Result);
        var root = json.RootElement;
        Assert.Equal("training", root.GetProperty("state").GetString());
        Assert.Equal(11, root.GetProperty("step").GetInt64());
        Assert.Equal(0.25, root.GetProperty("loss").GetDouble());
        Assert.Equal(2, root.GetProperty("worker_joins").GetInt32());
        Assert.Equal(1, root.GetProperty("worker_losses").GetInt32());
        // 11 steps of 1.1 s carried 704 images: 640 images/s, within rounding.
        Assert.Equal(640, root.GetProperty("images_per_second").GetDouble(), 0.1);
        var worker = Assert.Single(root.GetProperty("workers").EnumerateArray());
        Assert.Equal("a", worker.GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("test_accuracy").ValueKind);

        string metrics = http.GetStringAsync(server.Url + "metrics").Result;
        Assert.Contains("# TYPE disttrain_step gauge\ndisttrain_step 11\n", metrics);
        Promtool.Check(metrics);
        Assert.Contains("disttrain_worker_losses_total 1\n", metrics);
        Assert.Contains("disttrain_worker_images_per_second{worker=\"a\"} ", metrics);
        Assert.DoesNotContain("worker=\"b\"", metrics);

        var missing = http.GetAsync(server.Url + "nothing").Result;
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        var post = http.PostAsync(server.Url + "status", new StringContent("x")).Result;
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
    }

    /// 100 strangers at once, some never sending a byte: the status endpoint still answers a real
    /// client at once after they go, and while they hold their connections it answers within the
    /// header timeout (5 s), not never.
    [Fact]
    public void After_100_strangers_the_status_endpoint_still_answers()
    {
        var status = new TrainingStatus("lenet5", epochs: 1, totalSteps: 10, stepsPerEpoch: 10);
        using var server = StatusServer.Start(status, "127.0.0.1", Ports.Free());
        var uri = new Uri(server.Url);
        var strangers = Enumerable.Range(0, 100).Select(_ => new TcpClient("127.0.0.1", uri.Port)).ToList();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        // While they hold on, the places over 64 are refused; a client that tries again (as a probe
        // does) is answered once the silent ones are cut off after the header timeout.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        bool answered = false;
        while (!answered && clock.Elapsed < TimeSpan.FromSeconds(15))
        {
            try { answered = http.GetAsync(server.Url + "healthz").Result.StatusCode == HttpStatusCode.OK; }
            catch (AggregateException) { Thread.Sleep(200); }
        }
        Assert.True(answered, "no answer within 15 s while 100 strangers held connections");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"answered after {clock.Elapsed.TotalSeconds:F1} s");
        foreach (var s in strangers) s.Dispose();
        clock.Restart();
        Assert.Equal(HttpStatusCode.OK, http.GetAsync(server.Url + "readyz").Result.StatusCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"answered after {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void A_status_port_in_use_is_a_one_line_error()
    {
        var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            int port = ((IPEndPoint)taken.LocalEndpoint).Port;
            var e = Assert.Throws<BadInputException>(() => StatusServer.Start(new TrainingStatus("m", 1, 1, 1), "127.0.0.1", port));
            Assert.StartsWith($"--status-port {port}: cannot listen on 127.0.0.1:{port}", e.Message);
        }
        finally { taken.Stop(); }
    }

    [Fact]
    public void Plain_progress_has_no_control_characters_and_says_where_the_run_is()
    {
        var output = new StringWriter();
        var view = new PlainProgress(output, everySeconds: 0);
        var status = new TrainingStatus("lenet5", 1, 10, 10);
        status.Step(new StepReport(4, 10, 0, 0.5, 0.75, 0.01, 0), new StepTiming(0.5, 0.2, 0.1, [new WorkerShare("w1", 16, 0.2), new WorkerShare("w2", 16, 0.2)], 0));
        view.Log("worker w1 joined");
        view.Step(status);
        string text = output.ToString();
        Assert.DoesNotContain(text, c => char.IsControl(c) && c != '\n' && c != '\r');
        Assert.Contains("step 4/10 (epoch 1/1)", text);
        Assert.Contains("64 img/s [w1 32, w2 32]", text);
        Assert.Contains("ETA 0:03", text);   // 6 steps left at 2 steps/s
    }

    [Fact]
    public void Akka_log_lines_are_single_lines_and_closing_connections_are_quiet()
    {
        Exception cause;
        try { throw new InvalidOperationException("first line\n   at somewhere"); }
        catch (InvalidOperationException e) { cause = e; }
        var error = new Error(cause, "akka://disttrain/system/x", typeof(UserViewTests), "Something broke\nsecond line");
        Assert.Equal("akka error: Something broke (InvalidOperationException: first line)", ConciseLogger.Format(error));
        var gated = new Warning("src", typeof(UserViewTests), "Association with remote system akka.tcp://x has failed; address is now gated for 5000 ms. Reason: [Akka.Remote.EndpointDisassociatedException: Disassociated]");
        Assert.Null(ConciseLogger.Format(gated));
        // A connection that failed for another reason (a TLS handshake, a refusal) is worth a line.
        var refused = new Warning("src", typeof(UserViewTests), "Tried to associate with unreachable remote address [akka.tcp://x]. Address is now gated for 5000 ms. Reason: [Connection refused]");
        Assert.Equal("akka warning: Tried to associate with unreachable remote address [akka.tcp://x]. Address is now gated for 5000 ms. Reason: [Connection refused]", ConciseLogger.Format(refused));

        // Akka retries an unreachable peer every 5 s: the same warning is written once a minute.
        var repeats = new RepeatFilter(TimeSpan.FromMinutes(1));
        var t0 = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        Assert.True(repeats.ShouldWrite("akka warning: unreachable 10.0.0.2", t0));
        Assert.False(repeats.ShouldWrite("akka warning: unreachable 10.0.0.2", t0.AddSeconds(5)));
        Assert.True(repeats.ShouldWrite("akka warning: unreachable 10.0.0.3", t0.AddSeconds(5)));
        Assert.True(repeats.ShouldWrite("akka warning: unreachable 10.0.0.2", t0.AddSeconds(61)));
    }

    [Fact]
    public void Train_piped_to_a_file_writes_plain_lines_and_leaves_report_metrics_and_plots()
    {
        var data = CliHarness.IdxFolder(_dir, train: 64, test: 16, seed: 3);
        string report = Path.Combine(_dir, "out", "run.json"), metrics = Path.Combine(_dir, "out", "run.jsonl");
        var (exit, stdout, stderr) = Run("train", "--data", data, "--batch", "16", "--epochs", "2", "--in-process", "--workers", "2",
                                         "--report", report, "--metrics", metrics);
        Assert.True(exit == 0, stdout + stderr);
        Assert.DoesNotContain(stdout, c => char.IsControl(c) && c != '\n' && c != '\r');
        Assert.Contains("epoch 2/2", stdout);
        AssertPng(Path.Combine(_dir, "out", "run-loss.png"), 1000, 600);
        AssertPng(Path.Combine(_dir, "out", "run-accuracy.png"), 1000, 600);
        Assert.Equal(8, File.ReadLines(metrics).Count(l => l.Contains("\"event\":\"step\"")));
    }

    static void AssertPng(string path, int width, int height)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        // IHDR: width and height, big-endian, at bytes 16 and 20.
        Assert.Equal(width, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
        Assert.Equal(height, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        Assert.True(bytes.Length > 10_000, $"{path}: {bytes.Length} bytes is too small to hold the curves");
    }
}
