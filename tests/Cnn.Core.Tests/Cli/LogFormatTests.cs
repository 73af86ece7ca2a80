using System.Text.Json;
using DistTrain.Coordinator.Reporting;
using DistTrain.TestSupport;
using Microsoft.Extensions.Logging;

namespace DistTrain.Cnn.Tests.Cli;

/// --log-format json: every line on stdout a JSON object a log collector can take, with the
/// run's figures as fields.
public class LogFormatTests
{
    [Fact]
    public void Train_writes_one_json_object_a_line_with_the_runs_figures()
    {
        using var dir = new TempFolder("log-json");
        string data = CliHarness.IdxFolder(dir.Path, train: 128, test: 32, seed: 3);
        var (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--batch", "16", "--epochs", "1",
                                                    "--log-format", "json", "--report", dir["r.json"]);
        Assert.True(exit == 0, stdout + stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.True(lines.Count >= 5);
        foreach (var l in lines)
        {
            Assert.True(DateTime.TryParse(l.GetProperty("time").GetString(), out _));
            Assert.Contains(l.GetProperty("level").GetString(), new[] { "information", "warning", "error" });
            Assert.StartsWith("disttrain.", l.GetProperty("category").GetString());
            Assert.False(string.IsNullOrEmpty(l.GetProperty("message").GetString()));
        }
        var report = JsonDocument.Parse(File.ReadAllText(dir["r.json"])).RootElement;
        var epoch = lines.Single(l => l.TryGetProperty("test_accuracy", out _));
        Assert.Equal(report.GetProperty("test_accuracy").GetDouble(), epoch.GetProperty("test_accuracy").GetDouble());
        Assert.Equal(8, epoch.GetProperty("step").GetInt64());
        Assert.Contains(lines, l => l.GetProperty("message").GetString()!.Contains($"parameter_sha256 {report.GetProperty("parameter_sha256").GetString()}"));
    }

    [Fact]
    public void Warnings_and_errors_keep_their_level()
    {
        var output = new StringWriter();
        using (var factory = LoggerFactory.Create(b => b.AddProvider(new JsonLinesLoggerProvider(output))))
        {
            var writer = new LoggingTextWriter(factory.CreateLogger("disttrain.test"));
            writer.WriteLine("warning: a checkpoint was skipped");
            writer.Write("error: part one, ");
            writer.Write("part two\n");
            writer.WriteLine("akka warning: an association failed");
            writer.WriteLine("all \"quoted\" and ünïcode");
        }
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(["warning", "error", "warning", "information"], lines.Select(l => l.GetProperty("level").GetString()));
        Assert.Equal("error: part one, part two", lines[1].GetProperty("message").GetString());
        Assert.Equal("all \"quoted\" and ünïcode", lines[3].GetProperty("message").GetString());
    }
}
