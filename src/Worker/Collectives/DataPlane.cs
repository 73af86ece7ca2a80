using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// The gradient data plane: ring neighbours send their <see cref="GradientChunk"/>s to each other
/// over a plain TCP connection instead of Akka.Remote, which spends most of its CPU copying and
/// wrapping each payload (see the README's Benchmarks). Akka keeps control, membership and
/// failure detection; a chunk still goes through the worker actor, which validates it exactly as
/// before (generation, step, round, segment, sender).
///
/// A connection serves one generation from one ring predecessor. It opens with a challenge: the
/// listener sends 32 random bytes, the sender answers with its ring path and
/// HMAC-SHA256(job token, nonce ‖ path), so a process without the token cannot feed chunks and the
/// token never crosses the wire. Frames are a 32-byte header (generation, step, round, segment,
/// part, parts, payload length) and the payload's little-endian int64 bytes.
public sealed class DataPlane : IDisposable
{
    const uint Magic = 0x50445444;   // "DTDP"
    const int Version = 1;
    const int HeaderBytes = 32;
    const int MaxPathBytes = 2048;
    static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(10);
    static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(30);
    /// Connections that have not proved the token yet, at most: each holds a thread for up to HelloTimeout.
    const int MaxUnproven = 32;
    int _unproven;

    readonly TcpListener _listener;
    readonly byte[] _key;
    readonly Action<string, GradientChunk> _deliver;
    readonly Action<string> _log;
    readonly CancellationTokenSource _stop = new();
    readonly ConcurrentDictionary<Socket, byte> _open = new();

    public int Port { get; }

    /// Listens on host:port (0: any free port). `deliver(senderPath, chunk)` is called on a
    /// connection's reader thread for every chunk, in the order it was sent.
    public DataPlane(string host, int port, string jobToken, Action<string, GradientChunk> deliver, Action<string> log)
    {
        _key = SHA256.HashData(Encoding.UTF8.GetBytes("disttrain data plane\n" + jobToken));
        _deliver = deliver;
        _log = log;
        _listener = new TcpListener(ProtocolConfig.BindAddress(host), port);
        _listener.Start(backlog: 64);
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
        try
        {
            if (Interlocked.Increment(ref _unproven) > MaxUnproven) return;   // too many strangers at once
            counted = true;
            socket.NoDelay = true;
            socket.ReceiveBufferSize = 4 << 20;
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            using var stream = new NetworkStream(socket, ownsSocket: false);
            string? from;
            // The whole hello within HelloTimeout, not each read: a trickling stranger is cut off.
            using (new Timer(_ => socket.Dispose(), null, HelloTimeout, Timeout.InfiniteTimeSpan))
                from = Hello(socket, stream);
            Interlocked.Decrement(ref _unproven);
            counted = false;
            if (from is null) { _log($"data plane: refused a connection from {peer}: wrong job token or not a DistTrain peer"); return; }
            var header = new byte[HeaderBytes];
            while (true)
            {
                if (!ReadAll(stream, header)) return;   // the sender closed it (next generation, job end)
                int length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(28));
                if ((uint)length > ProtocolConfig.MaximumFrameBytes || length % 8 != 0)
                {
                    _log($"data plane: closed the connection from {from}: a frame of {length} bytes");
                    return;
                }
                // Pooled: the receiver releases the chunk once it has added it (or dropped it).
                var payload = Payload.Buffers.Rent(length);
                if (!ReadAll(stream, payload.AsSpan(0, length))) { Payload.Buffers.Return(payload); return; }
                _deliver(from, Decode(header, payload, length));
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }   // peer gone: membership handles it
        finally
        {
            if (counted) Interlocked.Decrement(ref _unproven);
            _open.TryRemove(socket, out _);
            socket.Dispose();
        }
    }

    /// The challenge; the sender's ring path when it proves it holds the job token, else null.
    string? Hello(Socket socket, NetworkStream stream)
    {
        socket.ReceiveTimeout = (int)HelloTimeout.TotalMilliseconds;
        var nonce = RandomNumberGenerator.GetBytes(32);
        var greeting = new byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(greeting, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(greeting.AsSpan(4), Version);
        nonce.CopyTo(greeting, 8);
        stream.Write(greeting);

        var head = new byte[12];
        if (!ReadAll(stream, head)) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) != Magic || BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(4)) != Version) return null;
        int pathLength = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(8));
        if ((uint)pathLength > MaxPathBytes) return null;
        var path = new byte[pathLength];
        var mac = new byte[32];
        if (!ReadAll(stream, path) || !ReadAll(stream, mac)) return null;
        if (!CryptographicOperations.FixedTimeEquals(mac, Mac(nonce, path))) return null;
        socket.ReceiveTimeout = 0;
        return Encoding.UTF8.GetString(path);
    }

    /// A frame's header: generation, step, round, segment, part, parts, payload bytes (little-endian).
    static void Encode(GradientChunk c, Span<byte> h)
    {
        BinaryPrimitives.WriteInt32LittleEndian(h, c.Generation);
        BinaryPrimitives.WriteInt64LittleEndian(h[4..], c.Step);
        BinaryPrimitives.WriteInt32LittleEndian(h[12..], c.Round);
        BinaryPrimitives.WriteInt32LittleEndian(h[16..], c.Segment);
        BinaryPrimitives.WriteInt32LittleEndian(h[20..], c.Part);
        BinaryPrimitives.WriteInt32LittleEndian(h[24..], c.Parts);
        BinaryPrimitives.WriteInt32LittleEndian(h[28..], c.Bytes.Length);
    }

    static GradientChunk Decode(ReadOnlySpan<byte> h, byte[] payload, int length) => new(
        BinaryPrimitives.ReadInt32LittleEndian(h), BinaryPrimitives.ReadInt64LittleEndian(h[4..]),
        BinaryPrimitives.ReadInt32LittleEndian(h[12..]), BinaryPrimitives.ReadInt32LittleEndian(h[16..]),
        BinaryPrimitives.ReadInt32LittleEndian(h[20..]), BinaryPrimitives.ReadInt32LittleEndian(h[24..]), payload) { PooledLength = length };

    byte[] Mac(byte[] nonce, byte[] path) => HMACSHA256.HashData(_key, nonce.Concat(path).ToArray());

    static bool ReadAll(Stream stream, Span<byte> buffer)
    {
        try { stream.ReadExactly(buffer); return true; }
        catch (EndOfStreamException) { return false; }
    }

    /// A connection to `endpoint` ("host:port") for one generation, sending as `selfPath` (this
    /// worker's path as the ring names it). Sends never block the caller. When the successor's
    /// data plane cannot be reached (a firewall in front of its --data-port, say) within
    /// `patience`, the chunks go to `fallback` instead (over Akka.Remote), so the ring does not
    /// wait for chunks that will never come.
    public Link Connect(string endpoint, string selfPath, Action<GradientChunk>? fallback = null, TimeSpan? patience = null) =>
        new(this, endpoint, selfPath, fallback, patience ?? TimeSpan.FromSeconds(10));

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        foreach (var s in _open.Keys) s.Dispose();
    }

    /// The sending side of one connection: chunks are queued and written by a thread of their own,
    /// so a slow or stopped successor never blocks the worker actor.
    public sealed class Link : IDisposable
    {
        readonly BlockingCollection<GradientChunk> _queue = new();
        readonly DataPlane _plane;
        readonly string _endpoint, _selfPath;
        readonly Action<GradientChunk>? _fallback;
        readonly TimeSpan _patience;
        readonly List<GradientChunk> _recent = [];
        volatile NetworkStream? _stream;
        volatile bool _disposed;

        internal Link(DataPlane plane, string endpoint, string selfPath, Action<GradientChunk>? fallback, TimeSpan patience)
        {
            _plane = plane;
            _endpoint = endpoint;
            _selfPath = selfPath;
            _fallback = fallback;
            _patience = patience;
            new Thread(Run) { IsBackground = true, Name = "data-plane-out" }.Start();
        }

        public void Send(GradientChunk chunk)
        {
            try { _queue.Add(chunk); }
            catch (InvalidOperationException) { }   // disposed: the generation is over
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
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, SendBufferSize = 4 << 20 };
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
                    Thread.Sleep(100);
                }
                catch (AggregateException e) when (e.InnerException is SocketException inner) { socket.Dispose(); throw inner; }
                catch { socket.Dispose(); throw; }
            }
        }

        void Run()
        {
            NetworkStream? stream = null;
            try
            {
                byte[] greeting = new byte[40];
                try
                {
                    stream = new NetworkStream(ConnectWithRetry(), ownsSocket: true);
                    _stream = stream;
                    stream.Socket.ReceiveTimeout = (int)HelloTimeout.TotalMilliseconds;
                    stream.ReadExactly(greeting);
                    stream.Socket.ReceiveTimeout = 0;
                    if (BinaryPrimitives.ReadUInt32LittleEndian(greeting) != Magic || BinaryPrimitives.ReadInt32LittleEndian(greeting.AsSpan(4)) != Version)
                        throw new IOException($"{_endpoint} is not a DistTrain data plane of version {Version}");
                }
                catch (Exception e) when (e is IOException or SocketException or TimeoutException or FormatException or ArgumentException)
                {
                    // Nothing was sent yet: everything this generation sends goes over Akka.Remote instead.
                    if (_disposed) return;
                    _plane._log($"data plane: cannot reach {_endpoint} ({e.Message}); sending gradients over Akka.Remote instead");
                    Fallback([]);
                    return;
                }
                // A successor that stops reading (gone without a reset) fails the write instead of blocking it for ever.
                stream.Socket.SendTimeout = (int)WriteTimeout.TotalMilliseconds;
                stream.Socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                var path = Encoding.UTF8.GetBytes(_selfPath);
                var hello = new byte[12 + path.Length + 32];
                BinaryPrimitives.WriteUInt32LittleEndian(hello, Magic);
                BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), Version);
                BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(8), path.Length);
                path.CopyTo(hello, 12);
                _plane.Mac(greeting[8..40], path).CopyTo(hello, 12 + path.Length);
                stream.Write(hello);
                var header = new byte[HeaderBytes];
                foreach (var c in _queue.GetConsumingEnumerable())
                {
                    Remember(c);
                    Encode(c, header);
                    stream.Write(header);
                    stream.Write(c.Bytes);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                if (_disposed) return;   // the generation is over: its chunks no longer matter
                // The connection broke while the successor may still be alive (a reset, an idle
                // timeout on the path, a refused hello): what it may not have received of the last
                // two steps is sent again over Akka.Remote, with everything still queued. A chunk it
                // did receive is rejected there as a duplicate, so nothing is summed twice.
                _plane._log($"data plane: the connection to {_endpoint} broke ({e.Message}); resending this step's gradients over Akka.Remote");
                Fallback(_recent);
            }
            finally { stream?.Dispose(); }
        }

        /// The chunks of the two newest steps this link has written: the successor may still need
        /// the older one (its all-gather can finish after this rank has moved on).
        /// Keeps the last two steps' chunks for a resend; older ones go back to the pool. Only the
        /// writer thread touches this list, so a buffer is given back once, after its last write.
        void Remember(GradientChunk c)
        {
            if (_recent.Count > 0 && _recent[^1].Step != c.Step)
                _recent.RemoveAll(old =>
                {
                    if (old.Step >= c.Step - 1) return false;
                    old.Release();
                    return true;
                });
            _recent.Add(c);
        }

        /// Sends over Akka.Remote, as exact copies: a pooled buffer never reaches a serializer, and
        /// goes back to the pool once copied (this runs on the writer thread, the buffers' last user).
        void Fallback(List<GradientChunk> resend)
        {
            if (_fallback is null) return;
            foreach (var c in resend) Forward(c);
            resend.Clear();
            foreach (var c in _queue.GetConsumingEnumerable()) Forward(c);
        }

        void Forward(GradientChunk c)
        {
            var exact = c.Exact();
            c.Release();
            _fallback!(exact);
        }

        /// Ends the link with its generation: queued chunks are dropped and the connection closed
        /// (a write blocked on a successor that is gone is cut off), since a new generation redoes
        /// the step without them.
        public void Dispose()
        {
            _disposed = true;
            _queue.CompleteAdding();
            while (_queue.TryTake(out _)) { }
            try { _stream?.Socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            _stream?.Dispose();
        }
    }
}
