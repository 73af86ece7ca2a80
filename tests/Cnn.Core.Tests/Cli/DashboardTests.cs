using System.Net;
using System.Text.Json;
using DistTrain.TestSupport;
using Microsoft.Playwright;

namespace DistTrain.Cnn.Tests.Cli;

/// The dashboard in a real headless browser (Debian's chromium, driven by Playwright; tests/run.sh
/// installs it) while a 2-worker run trains on MNIST: the page loads without console errors, its
/// curves have points, and they grow while the run goes on.
public class DashboardTests
{
    const string Chromium = "/usr/bin/chromium";

    [Fact]
    public async Task The_dashboard_loads_without_errors_and_its_curves_grow_while_a_run_trains()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} not found: tests/run.sh installs Debian's chromium (apt-get install chromium)");
        string mnist = Repository.Mnist ?? throw new InvalidOperationException("data/mnist is missing: tests/run.sh fetches it");
        int port = Ports.Free();
        using var dir = new TempFolder("dashboard");
        // The run as a user starts it: the disttrain process and its 2 worker processes.
        var psi = DisttrainProcess.StartInfo(["train", "--workers", "2", "--data", mnist, "--epochs", "2",
                                              "--status-port", port.ToString(), "--progress", "plain", "--report", dir["r.json"]]);
        var run = Task.Run(() => Processes.RunToExit(psi, Patience.Training));
        string url = $"http://127.0.0.1:{port}/";
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        // Wait for the first steps.
        var deadline = DateTime.UtcNow + Patience.Training;
        string lastError = "";
        while (true)
        {
            if (run.IsCompleted) Assert.Fail($"the run ended before the dashboard was looked at ({lastError}): {run.Result.Output}");
            Assert.True(DateTime.UtcNow < deadline, "no step within the patience");
            try
            {
                using var status = JsonDocument.Parse(await http.GetStringAsync(url + "status"));
                if (status.RootElement.GetProperty("step").GetInt64() > 0) break;
            }
            catch (HttpRequestException e) { lastError = e.Message; }
            await Task.Delay(100);
        }
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(url + "healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(url + "readyz")).StatusCode);
        // A live scrape of the training run: promtool accepts it, and the workers' figures are in it.
        string scrape = await http.GetStringAsync(url + "metrics");
        Promtool.Check(scrape);
        Assert.Contains("disttrain_worker_compute_seconds_count{worker=\"local-1\"}", scrape);
        Assert.Contains("process_cpu_seconds_total", scrape);

        var errors = new List<string>();
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 1000 } });
        page.Console += (_, m) => { if (m.Type == "error") errors.Add(m.Text); };
        page.PageError += (_, e) => errors.Add(e);
        var response = await page.GotoAsync(url);
        Assert.Equal(200, response!.Status);
        try { await page.WaitForFunctionAsync("() => window.disttrain && window.disttrain.steps.length > 0", null, new() { Timeout = 30_000 }); }
        catch (TimeoutException) { Assert.Fail($"no point on the page within 30 s; page errors: {string.Join(" | ", errors)}"); }
        int first = await page.EvaluateAsync<int>("() => window.disttrain.steps.length");
        if (Environment.GetEnvironmentVariable("DISTTRAIN_DASHBOARD_PNG") is { Length: > 0 })
            await page.WaitForFunctionAsync("() => window.disttrain.epochs.length > 0 && window.disttrain.steps.length > 1300", null, new() { Timeout = 60_000 });
        await page.WaitForFunctionAsync($"() => window.disttrain.steps.length > {first} && window.disttrain.messages >= 2", null, new() { Timeout = 30_000 });
        int later = await page.EvaluateAsync<int>("() => window.disttrain.steps.length");
        Assert.True(later > first, $"the curve did not grow: {first} then {later} points");
        Assert.Equal("training", await page.InnerTextAsync("#state"));
        Assert.Equal(2, await page.Locator("#workers tr").CountAsync());
        // The canvas has been drawn on: not every pixel is blank.
        bool drawn = await page.EvaluateAsync<bool>("""
            () => { const c = document.getElementById('lossChart'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true; return false; }
            """);
        Assert.True(drawn, "the loss chart is blank");
        await page.ScreenshotAsync(new() { Path = dir["dashboard.png"] });
        Assert.True(new FileInfo(dir["dashboard.png"]).Length > 10_000);
        // DISTTRAIN_DASHBOARD_PNG=docs/dashboard.png keeps it: the README's picture is made this way.
        if (Environment.GetEnvironmentVariable("DISTTRAIN_DASHBOARD_PNG") is { Length: > 0 } keep) File.Copy(dir["dashboard.png"], keep, overwrite: true);
        Assert.Empty(errors);

        var (exit, output) = await run;
        Assert.True(exit == 0, output);
    }
}
