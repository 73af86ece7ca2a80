using System.Net;
using System.Net.Sockets;
using System.Text;

namespace DistTrain.Coordinator.Reporting;

/// --status-port: GET /status answers the run's state as JSON, GET /metrics in Prometheus' text
/// format. Read-only; it never changes the run. Bound to the coordinator's --host.
public sealed class StatusServer : IDisposable
{
    readonly HttpListener _listener = new();
    readonly TrainingStatus _status;
    readonly Task _loop;

    public string Url { get; }

    StatusServer(TrainingStatus status, string url)
    {
        _status = status;
        Url = url;
        _listener.Prefixes.Add(url);
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    /// Starts serving, or says in one line why it cannot (port taken, address not local).
    public static StatusServer Start(TrainingStatus status, string host, int port)
    {
        string shown = host.Contains(':') ? $"[{host}]" : host;
        try { return new StatusServer(status, $"http://{shown}:{port}/"); }
        catch (HttpListenerException e) { throw new Cli.UsageException($"--status-port {port}: cannot listen on {host}:{port}: {e.Message}"); }
        catch (SocketException e) { throw new Cli.UsageException($"--status-port {port}: cannot listen on {host}:{port}: {e.Message}"); }
    }

    async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            try { Answer(context); }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException) { }   // the client went away
        }
    }

    void Answer(HttpListenerContext context)
    {
        var response = context.Response;
        string path = context.Request.Url?.AbsolutePath ?? "/";
        (int code, string type, string body) = (context.Request.HttpMethod, path) switch
        {
            ("GET" or "HEAD", "/status" or "/") => (200, "application/json; charset=utf-8", _status.Take().ToJson() + "\n"),
            ("GET" or "HEAD", "/metrics") => (200, "text/plain; version=0.0.4; charset=utf-8", _status.Take().ToPrometheus()),
            ("GET" or "HEAD", _) => (404, "text/plain; charset=utf-8", "not found: try /status or /metrics\n"),
            _ => (405, "text/plain; charset=utf-8", "only GET\n"),
        };
        var bytes = Encoding.UTF8.GetBytes(body);
        response.StatusCode = code;
        response.ContentType = type;
        response.ContentLength64 = bytes.Length;
        if (context.Request.HttpMethod != "HEAD") response.OutputStream.Write(bytes);
        response.Close();
    }

    public void Dispose()
    {
        try { _listener.Stop(); _listener.Close(); } catch (ObjectDisposedException) { }
        _loop.Wait(TimeSpan.FromSeconds(2));
    }
}
