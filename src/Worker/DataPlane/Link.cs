using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Security.Authentication;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;

namespace DistTrain.Worker.DataPlane;

/// The sending side of one connection, to the ring successor for one generation. Chunks are copied
/// into leased buffers, queued and written by a thread of their own, so a slow or stopped successor
/// never blocks the worker actor. When the successor cannot be reached, or the connection breaks
/// mid-step, the chunks go to `fallback` (Akka.Remote) instead, so the ring does not wait for ever.
public sealed class Link : IChunkSink, IDisposable
{
    readonly BlockingCollection<ChunkLease> _queue = new();
    readonly string _endpoint, _selfPath;
    readonly Handshake _handshake;
    readonly ChunkBuffers _buffers;
    readonly Action<string> _log;
    readonly Action<GradientChunk>? _fallback;
    readonly Tls? _tls;
    readonly TimeSpan _patience;
    /// The chunks of the two newest steps this link has written (see Remember). Only the writer
    /// thread touches it, so each lease in it is disposed once, after its last use.
    readonly List<ChunkLease> _recent = [];
    volatile NetworkStream? _stream;
    volatile bool _disposed;

    internal Link(string endpoint, string selfPath, Handshake handshake, ChunkBuffers buffers, Action<string> log,
                  Action<GradientChunk>? fallback, TimeSpan patience, Tls? tls)
    {
        _tls = tls;
        _endpoint = endpoint;
        _selfPath = selfPath;
        _handshake = handshake;
        _buffers = buffers;
        _log = log;
        _fallback = fallback;
        _patience = patience;
        new Thread(Run) { IsBackground = true, Name = "data-plane-out" }.Start();
    }

    public int Send(ChunkHeader header, ReadOnlySpan<long> values)
    {
        var lease = ChunkLease.Of(_buffers, header, values);
        int bytes = lease.Length;
        try { _queue.Add(lease); }
        catch (InvalidOperationException) { lease.Dispose(); }   // disposed: the generation is over
        return bytes;
    }

    /// The successor's listener may be a moment late (a process starting): refused connections
    /// are retried, and an unanswered one abandoned, within the link's patience.
    Socket ConnectWithRetry()
    {
        int colon = _endpoint.LastIndexOf(':');
        string host = _endpoint[..colon];
        int port = int.Parse(_endpoint[(colon + 1)..]);
        var deadline = DateTime.UtcNow + _patience;
        while (true)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, SendBufferSize = ProtocolConfig.DataPlaneSocketBufferBytes };
            try
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !socket.ConnectAsync(host, port).Wait(left))
                    throw new TimeoutException($"no answer within {_patience.TotalSeconds:F0}s");
                return socket;
            }
            catch (AggregateException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused }
                                               && DateTime.UtcNow < deadline && !_queue.IsAddingCompleted)
            {
                socket.Dispose();
                Thread.Sleep(ProtocolConfig.DataPlaneConnectRetry);
            }
            catch (AggregateException e) when (e.InnerException is SocketException inner) { socket.Dispose(); throw inner; }
            catch { socket.Dispose(); throw; }
        }
    }

    void Run()
    {
        NetworkStream? stream = null;
        Stream? io = null;   // the connection, or the TLS session on it
        try
        {
            byte[] nonce;
            try
            {
                stream = new NetworkStream(ConnectWithRetry(), ownsSocket: true);
                _stream = stream;
                stream.Socket.ReceiveTimeout = (int)ProtocolConfig.DataPlaneHelloTimeout.TotalMilliseconds;
                stream.Socket.SendTimeout = (int)ProtocolConfig.DataPlaneHelloTimeout.TotalMilliseconds;
                io = _tls is null ? stream : DataPlaneTls.Connect(stream, _tls, _endpoint);
                nonce = Handshake.ReadGreeting(io, _endpoint);
                stream.Socket.ReceiveTimeout = 0;
            }
            catch (Exception e) when (e is IOException or SocketException or TimeoutException or FormatException or ArgumentException or AuthenticationException)
            {
                // Nothing was sent yet: everything this generation sends goes over Akka.Remote instead.
                if (_disposed) return;
                _log($"data plane: cannot reach {_endpoint} ({e.Message}); sending gradients over Akka.Remote instead");
                Fallback();
                return;
            }
            // A successor that stops reading (gone without a reset) fails the write instead of blocking it for ever.
            stream.Socket.SendTimeout = (int)ProtocolConfig.DataPlaneWriteTimeout.TotalMilliseconds;
            stream.Socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            _handshake.WriteHello(io, nonce, _selfPath);
            var header = new byte[FrameCodec.HeaderBytes];
            foreach (var c in _queue.GetConsumingEnumerable())
            {
                Remember(c);
                FrameCodec.Write(c.Header, c.Length, header);
                io.Write(header);
                io.Write(c.Bytes);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            if (_disposed) return;   // the generation is over: its chunks no longer matter
            // The connection broke while the successor may still be alive (a reset, an idle
            // timeout on the path, a refused hello): what it may not have received of the last
            // two steps is sent again over Akka.Remote, with everything still queued. A chunk it
            // did receive is rejected there as a duplicate, so nothing is summed twice.
            _log($"data plane: the connection to {_endpoint} broke ({e.Message}); resending this step's gradients over Akka.Remote");
            Fallback();
        }
        finally
        {
            io?.Dispose();
            stream?.Dispose();
            // The writer thread is the history's last user; anything still queued is dropped with it.
            foreach (var c in _recent) c.Dispose();
            _recent.Clear();
            while (_queue.TryTake(out var c)) c.Dispose();
        }
    }

    /// Keeps the chunks of the two newest steps for a resend (the successor may still need the
    /// older one: its all-gather can finish after this rank has moved on); older ones are disposed.
    void Remember(ChunkLease c)
    {
        if (_recent.Count > 0 && _recent[^1].Header.Step != c.Header.Step)
            _recent.RemoveAll(old =>
            {
                if (old.Header.Step >= c.Header.Step - 1) return false;
                old.Dispose();
                return true;
            });
        _recent.Add(c);
    }

    /// Sends the history, then everything queued until the link is disposed, over Akka.Remote as
    /// exact copies; each lease is disposed once copied.
    void Fallback()
    {
        if (_fallback is null) return;
        foreach (var c in _recent) Forward(c);
        _recent.Clear();
        foreach (var c in _queue.GetConsumingEnumerable()) Forward(c);
    }

    void Forward(ChunkLease c)
    {
        var exact = c.ToMessage();
        c.Dispose();
        _fallback!(exact);
    }

    /// Ends the link with its generation: queued chunks are dropped and the connection closed
    /// (a write blocked on a successor that is gone is cut off), since a new generation redoes
    /// the step without them.
    public void Dispose()
    {
        _disposed = true;
        _queue.CompleteAdding();
        while (_queue.TryTake(out var c)) c.Dispose();
        try { _stream?.Socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        _stream?.Dispose();
    }
}
