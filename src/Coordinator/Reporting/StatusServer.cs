using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DistTrain.Coordinator.Reporting;

/// --status-port: the run over HTTP on ASP.NET Core (Kestrel, minimal APIs), read-only, on the
/// coordinator's --host. GET /: the live dashboard (every asset served from here); /events: its
/// feed (server-sent events, a message a second); /status: the run as JSON; /metrics: Prometheus'
/// text format; /healthz: 200 while the process serves; /readyz: 200 while the coordinator takes
/// workers and trains, 503 once the run has ended. Any other method is 405, any other path 404.
public sealed class StatusServer : IDisposable
{
    /// Connections at once; a crowd of strangers cannot take more (Kestrel refuses the rest).
    public const int MaxConnections = 64;

    readonly WebApplication _app;
    readonly TrainingStatus _status;

    public string Url { get; }

    StatusServer(TrainingStatus status, IPAddress address, string host, int port)
    {
        _status = status;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxConcurrentConnections = MaxConnections;
            k.Limits.MaxRequestHeadersTotalSize = 8192;
            // A connection that sends no request is closed after 5 s, so silent strangers cannot
            // hold the 64 places for long (Kestrel's default is 30 s).
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(5);
            k.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(5);
            k.Listen(address, port);
        });
        _app = builder.Build();
        string[] read = ["GET", "HEAD"];
        _app.MapMethods("/", read, () => Results.Content(Dashboard.Html, "text/html; charset=utf-8"));
        _app.MapMethods("/dashboard.js", read, () => Results.Content(Dashboard.Script, "text/javascript; charset=utf-8"));
        _app.MapMethods("/status", read, () => Results.Content(_status.Take().ToJson() + "\n", "application/json; charset=utf-8"));
        _app.MapMethods("/metrics", read, async (HttpContext c) =>
        {
            c.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await _status.Metrics.WriteAsync(c.Response.Body, c.RequestAborted);
        });
        _app.MapMethods("/healthz", read, () => Results.Text("ok\n"));
        _app.MapMethods("/readyz", read, () =>
        {
            string state = _status.Take().State;
            return state is "starting" or "training" ? Results.Text($"ready: {state}\n") : Results.Text($"not ready: {state}\n", statusCode: 503);
        });
        _app.MapGet("/events", Events);
        _app.StartAsync().GetAwaiter().GetResult();
        var bound = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Url = $"http://{(host.Contains(':') ? $"[{host}]" : host)}:{new Uri(bound).Port}/";
    }

    /// Starts serving, or says in one line why it cannot (port taken, address not local).
    public static StatusServer Start(TrainingStatus status, string host, int port)
    {
        IPAddress address;
        try { address = DistTrain.Protocol.ProtocolConfig.BindAddress(host); }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or InvalidOperationException or ArgumentException)
        {
            throw new BadInputException($"--status-port {port}: {host} has no address to listen on");
        }
        try { return new StatusServer(status, address, host, port); }
        catch (IOException e) { throw new BadInputException($"--status-port {port}: cannot listen on {host}:{port}: {DistTrain.Protocol.ProtocolConfig.Innermost(e).Message}"); }
    }

    /// Server-sent events: every second (and at once on connecting) the status and the steps and
    /// epochs this client has not had yet, as one JSON message; until the client goes or the run ends.
    async Task Events(HttpContext c)
    {
        c.Response.ContentType = "text/event-stream";
        c.Response.Headers.CacheControl = "no-cache";
        int steps = 0, epochs = 0;
        var cancel = c.RequestAborted;
        try
        {
            while (!cancel.IsCancellationRequested)
            {
                var snapshot = _status.Take();
                var (newSteps, newEpochs) = _status.HistorySince(steps, epochs);
                steps += newSteps.Length;
                epochs += newEpochs.Length;
                // The status goes in as the JSON /status serves, not parsed and written again.
                var buffer = new System.Buffers.ArrayBufferWriter<byte>();
                using (var w = new Utf8JsonWriter(buffer))
                {
                    w.WriteStartObject();
                    w.WritePropertyName("status");
                    w.WriteRawValue(snapshot.ToJson(indented: false));
                    w.WritePropertyName("steps");
                    JsonSerializer.Serialize(w, newSteps.Select(p => new[] { p.Step, Finite(p.Loss), Finite(p.Accuracy), Math.Round(p.ImagesPerSecond, 1), Math.Round(p.Compute, 4), Math.Round(p.Reduce, 4) }));
                    w.WritePropertyName("epochs");
                    JsonSerializer.Serialize(w, newEpochs.Select(e => new[] { e.Epoch, e.Step, Finite(e.TrainLoss), Finite(e.TrainAccuracy), Finite(e.TestLoss), Finite(e.TestAccuracy) }));
                    w.WriteEndObject();
                }
                string message = Encoding.UTF8.GetString(buffer.WrittenSpan);
                await c.Response.WriteAsync($"data: {message}\n\n", Encoding.UTF8, cancel);
                await c.Response.Body.FlushAsync(cancel);
                await Task.Delay(TimeSpan.FromSeconds(1), cancel);
            }
        }
        catch (OperationCanceledException) { }   // the client went away, or the server stops
    }

    static double? Finite(double v) => double.IsFinite(v) ? v : null;

    public void Dispose()
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(2));   // open /events streams are cut, not awaited
        _app.StopAsync(limit.Token).GetAwaiter().GetResult();
        ((IDisposable)_app).Dispose();
    }
}
