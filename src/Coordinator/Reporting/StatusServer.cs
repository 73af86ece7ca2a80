using System.Net;
using System.Net.Sockets;
using System.Text;

namespace DistTrain.Coordinator.Reporting;

/// --status-port: GET /status answers the run's state as JSON, GET /metrics in Prometheus' text
/// format. Read-only; it never changes the run. It listens on the coordinator's --host address and
/// answers whatever Host header a client sends (a probe or a scraper may use an IP or a DNS name).
/// One short HTTP/1.1 exchange per connection: the bodies are small and the readers are scripts.
public sealed class StatusServer : IDisposable
{
    const int MaxRequestBytes = 8192;
    readonly TcpListener _listener;
    readonly TrainingStatus _status;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;

    public string Url { get; }

    StatusServer(TrainingStatus status, IPAddress address, string host, int port)
    {
        _status = status;
        _listener = new TcpListener(address, port);
        _listener.Start();
        int bound = ((IPEndPoint)_listener.LocalEndpoint).Port;
        Url = $"http://{(host.Contains(':') ? $"[{host}]" : host)}:{bound}/";
        _loop = Task.Run(ServeAsync);
    }

    /// Starts serving, or says in one line why it cannot (port taken, address not local).
    public static StatusServer Start(TrainingStatus status, string host, int port)
    {
        try
        {
            return new StatusServer(status, DistTrain.Protocol.ProtocolConfig.BindAddress(host), host, port);
        }
        catch (SocketException e) { throw new BadInputException($"--status-port {port}: cannot listen on {host}:{port}: {e.Message}"); }
        catch (InvalidOperationException) { throw new BadInputException($"--status-port {port}: {host} has no address to listen on"); }
    }

    async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            _ = Task.Run(() => AnswerAsync(client));
        }
    }

    async Task AnswerAsync(Socket client)
    {
        using var _ = client;
        using var stream = new NetworkStream(client, ownsSocket: false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            var request = await ReadHeadAsync(stream, timeout.Token);
            string[] first = request is null ? [] : request[..request.IndexOf('\r')].Split(' ');
            (int code, string type, string body) = first.Length == 3 ? (first[0], Path(first[1])) switch
            {
                ("GET" or "HEAD", "/status" or "/") => (200, "application/json; charset=utf-8", _status.Take().ToJson() + "\n"),
                ("GET" or "HEAD", "/metrics") => (200, "text/plain; version=0.0.4; charset=utf-8", _status.Take().ToPrometheus()),
                ("GET" or "HEAD", _) => (404, "text/plain; charset=utf-8", "not found: try /status or /metrics\n"),
                _ => (405, "text/plain; charset=utf-8", "only GET and HEAD\n"),
            } : (400, "text/plain; charset=utf-8", "bad request\n");
            var payload = Encoding.UTF8.GetBytes(body);
            string reason = code switch { 200 => "OK", 404 => "Not Found", 405 => "Method Not Allowed", _ => "Bad Request" };
            var head = Encoding.ASCII.GetBytes($"HTTP/1.1 {code} {reason}\r\nContent-Type: {type}\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n");
            await stream.WriteAsync(head, timeout.Token);
            if (first.Length == 3 && first[0] != "HEAD") await stream.WriteAsync(payload, timeout.Token);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException) { }   // the client went away
    }

    static string Path(string target)
    {
        int query = target.IndexOf('?');
        return query < 0 ? target : target[..query];
    }

    /// The request line and headers, or null when the client sends more than a status request needs.
    static async Task<string?> ReadHeadAsync(Stream stream, CancellationToken cancel)
    {
        var buffer = new byte[MaxRequestBytes];
        int filled = 0;
        while (filled < buffer.Length)
        {
            int n = await stream.ReadAsync(buffer.AsMemory(filled), cancel);
            if (n == 0) return null;
            filled += n;
            var text = Encoding.ASCII.GetString(buffer, 0, filled);
            if (text.Contains("\r\n\r\n", StringComparison.Ordinal)) return text;
        }
        return null;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _loop.Wait(TimeSpan.FromSeconds(2));
    }
}
