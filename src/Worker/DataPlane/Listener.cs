using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// Accepts ring predecessors' connections. Each must prove the job token within the hello timeout,
/// and at most DataPlaneMaxUnproven may be trying at once; then its frames are read on a thread of
/// its own and delivered in the order they were sent, each as a <see cref="ChunkLease"/> that the
/// receiver disposes.
sealed class Listener : IDisposable
{
    readonly TcpListener _listener;
    readonly Handshake _handshake;
    readonly ChunkBuffers _buffers;
    readonly Action<string, ChunkLease> _deliver;
    readonly Action<string> _log;
    readonly Tls? _tls;
    readonly CancellationTokenSource _stop = new();
    readonly ConcurrentDictionary<Socket, byte> _open = new();
    int _unproven;

    public int Port { get; }

    public Listener(string host, int port, Handshake handshake, ChunkBuffers buffers, Action<string, ChunkLease> deliver, Action<string> log, Tls? tls)
    {
        _tls = tls;
        _handshake = handshake;
        _buffers = buffers;
        _deliver = deliver;
        _log = log;
        _listener = new TcpListener(ProtocolConfig.BindAddress(host), port);
        _listener.Start(ProtocolConfig.DataPlaneListenBacklog);
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = Task.Run(AcceptLoop);
    }

    async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            var reader = new Thread(() => Serve(socket)) { IsBackground = true, Name = "data-plane-in" };
            reader.Start();
        }
    }

    void Serve(Socket socket)
    {
        _open[socket] = 0;
        string peer = socket.RemoteEndPoint?.ToString() ?? "?";
        bool counted = false;
        Stream? stream = null;
        try
        {
            // Counted before the check so that two arrivals cannot both take the last place; one
            // over the limit is refused and uncounted at once (it used to stay counted for good).
            counted = true;
            if (Interlocked.Increment(ref _unproven) > ProtocolConfig.DataPlaneMaxUnproven) return;   // too many strangers at once
            socket.NoDelay = true;
            socket.ReceiveBufferSize = ProtocolConfig.DataPlaneSocketBufferBytes;
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            stream = new NetworkStream(socket, ownsSocket: false);
            string? from;
            var helloTimeout = ProtocolConfig.DataPlaneHelloTimeout;
            socket.ReceiveTimeout = (int)helloTimeout.TotalMilliseconds;
            // The whole hello (and the TLS handshake before it) within the timeout, not each read:
            // a trickling stranger is cut off. Whichever comes first, the end of the hello or the
            // timer, decides: a hello finished just as the timer fires is not cut off afterwards.
            int decided = 0;
            using (new Timer(_ => { if (Interlocked.Exchange(ref decided, 1) == 0) socket.Dispose(); }, null, helloTimeout, Timeout.InfiniteTimeSpan))
            {
                try { if (_tls is not null) stream = DataPlaneTls.Accept(stream, _tls); }
                catch (Exception e) when (e is AuthenticationException or IOException or ObjectDisposedException)
                {
                    // Another CA, cleartext (which waits for a greeting that never comes, until the
                    // hello timeout), or a peer that went away mid-handshake.
                    _log($"data plane: refused a connection from {peer}: TLS handshake failed ({e.Message.ReplaceLineEndings(" ")}); is it a peer of this job's CA, over TLS?");
                    return;
                }
                from = _handshake.Challenge(stream);
                if (Interlocked.Exchange(ref decided, 1) != 0) return;   // the timer came first
            }
            socket.ReceiveTimeout = 0;
            Interlocked.Decrement(ref _unproven);
            counted = false;
            if (from is null) { _log($"data plane: refused a connection from {peer}: wrong job token or not a DistTrain peer"); return; }
            var header = new byte[FrameCodec.HeaderBytes];
            while (FrameCodec.ReadAll(stream, header))   // until the sender closes it (next generation, job end)
            {
                var (chunk, length) = FrameCodec.Read(header);
                if ((uint)length > ProtocolConfig.MaximumFrameBytes)
                {
                    _log($"data plane: closed the connection from {from}: a frame of {length} bytes");
                    return;
                }
                var lease = ChunkLease.Rent(_buffers, chunk, length);
                bool whole = false;
                try { whole = FrameCodec.ReadAll(stream, lease.Writable); }
                finally { if (!whole) lease.Dispose(); }   // cut off mid-frame: nobody else will
                if (!whole) return;
                _deliver(from, lease);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }   // peer gone: membership handles it
        finally
        {
            stream?.Dispose();
            if (counted) Interlocked.Decrement(ref _unproven);
            _open.TryRemove(socket, out _);
            socket.Dispose();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        foreach (var s in _open.Keys) s.Dispose();
    }
}
