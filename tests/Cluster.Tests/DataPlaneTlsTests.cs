using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using DistTrain.Protocol;
using DistTrain.TestSupport;
using DistTrain.Worker.DataPlane;

namespace DistTrain.Cluster.Tests;

/// The data plane of a TLS job: peers of the job's CA exchange chunks inside TLS sessions, so the
/// frames are protected and not only the hello; anyone else is refused before the hello.
public sealed class DataPlaneTlsTests : IDisposable
{
    static readonly Lazy<(Tls Job, Tls Peer, Tls Rogue)> Certs = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), $"disttrain-dptls-{Environment.ProcessId}");
        Certificates.Make(Path.Combine(dir, "job"), "listener", "sender");
        Certificates.Make(Path.Combine(dir, "rogue"), "rogue");   // another CA
        Tls Load(string ca, string node) => Tls.Load(Path.Combine(dir, ca, node + ".pfx"), Path.Combine(dir, ca, "ca.crt"), "");
        var certs = (Load("job", "listener"), Load("job", "sender"), Load("rogue", "rogue"));
        Directory.Delete(dir, recursive: true);
        return certs;
    });

    readonly BlockingCollection<(string From, ChunkLease Chunk)> _received = new();
    readonly ConcurrentQueue<string> _log = new();
    readonly GradientDataPlane _plane;

    public DataPlaneTlsTests() =>
        _plane = new GradientDataPlane("127.0.0.1", 0, "job-token", (from, c) => _received.Add((from, c)), _log.Enqueue, tls: Certs.Value.Job);

    public void Dispose()
    {
        _plane.Dispose();
        while (_received.TryTake(out var c)) c.Chunk.Dispose();
    }

    GradientDataPlane Sender(Tls? tls) => new("127.0.0.1", 0, "job-token", (_, c) => c.Dispose(), _log.Enqueue, tls: tls);

    static (ChunkHeader Header, long[] Values) Chunk(int part) =>
        (new ChunkHeader(3, 9, 0, 1, part, 8), Enumerable.Range(0, 4096).Select(i => 0x0123456789ABCDEFL ^ ((long)i << 20) ^ part).ToArray());

    [Fact]
    public void Peers_of_the_jobs_CA_exchange_chunks_and_the_wire_carries_none_of_their_bytes_in_the_clear()
    {
        // A relay between sender and listener records every byte that crosses the wire.
        using var relay = new Relay(_plane.Port);
        using var sender = Sender(Certs.Value.Peer);
        var sent = Enumerable.Range(0, 8).Select(Chunk).ToList();
        using (var link = sender.Connect($"127.0.0.1:{relay.Port}", "akka.ssl.tcp://disttrain@10.0.0.2:4054/user/worker#1"))
        {
            foreach (var (h, v) in sent) link.Send(h, v);
            foreach (var (h, v) in sent)
            {
                Assert.True(_received.TryTake(out var got, Patience.Reply), "a chunk did not arrive: " + string.Join("\n", _log));
                Assert.Equal("akka.ssl.tcp://disttrain@10.0.0.2:4054/user/worker#1", got.From);
                Assert.Equal(h, got.Chunk.Header);
                Assert.Equal(GradientCodec.Encode(v), got.Chunk.Bytes.ToArray());
                got.Chunk.Dispose();
            }
        }
        byte[] wire = relay.Seen();
        long encoded = sent.Sum(c => (long)GradientCodec.Encode(c.Values).Length);
        Assert.True(wire.Length > encoded, $"{wire.Length} bytes crossed the relay for {encoded} bytes of chunks");
        // Neither a run of payload bytes, nor the ring path of the hello, nor the hello's magic.
        byte[] payload = GradientCodec.Encode(sent[5].Values).AsSpan(1000, 32).ToArray();
        Assert.Equal(-1, wire.AsSpan().IndexOf(payload));
        Assert.Equal(-1, wire.AsSpan().IndexOf("10.0.0.2:4054"u8));
        Assert.Equal(-1, wire.AsSpan().IndexOf("DTDP"u8));   // 0x50445444 little-endian
    }

    [Fact]
    public void A_sender_of_another_CA_is_refused_in_the_TLS_handshake_and_nothing_arrives()
    {
        var fallback = new BlockingCollection<GradientChunk>();
        using var rogue = Sender(Certs.Value.Rogue);
        using (var link = rogue.Connect($"127.0.0.1:{_plane.Port}", "akka.ssl.tcp://disttrain@127.0.0.1:1/user/worker", fallback.Add))
        {
            var (h, v) = Chunk(0);
            link.Send(h, v);
            Assert.False(_received.TryTake(out _, TimeSpan.FromSeconds(1)));
            // The sender learns it too: its chunks go over Akka.Remote (where TLS refuses it again).
            Assert.True(fallback.TryTake(out _, Patience.Reply), string.Join("\n", _log));
        }
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("TLS handshake failed")), Patience.Reply), string.Join("\n", _log));
    }

    [Fact]
    public void A_cleartext_sender_with_the_job_token_is_refused_by_a_TLS_listener()
    {
        // Each waits for the other to speak first (a TLS hello; a greeting) until the hello timeout.
        using var cleartext = Sender(null);
        using (var link = cleartext.Connect($"127.0.0.1:{_plane.Port}", "akka.tcp://disttrain@127.0.0.1:1/user/worker", _ => { }))
        {
            var (h, v) = Chunk(0);
            link.Send(h, v);
            Assert.False(_received.TryTake(out _, TimeSpan.FromSeconds(2)));
        }
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("TLS handshake failed")), Patience.Reply), string.Join("\n", _log));
    }

    /// A TCP relay to 127.0.0.1:target that keeps a copy of what the client sends.
    sealed class Relay : IDisposable
    {
        readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        readonly MemoryStream _seen = new();
        readonly List<Socket> _sockets = [];
        public int Port { get; }

        public Relay(int target)
        {
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    Socket client;
                    try { client = await _listener.AcceptSocketAsync(); } catch (Exception) { return; }
                    var server = new Socket(SocketType.Stream, ProtocolType.Tcp);
                    await server.ConnectAsync(IPAddress.Loopback, target);
                    lock (_sockets) _sockets.AddRange([client, server]);
                    _ = Pump(client, server, record: true);
                    _ = Pump(server, client, record: false);
                }
            });
        }

        async Task Pump(Socket from, Socket to, bool record)
        {
            var buffer = new byte[1 << 16];
            try
            {
                int n;
                while ((n = await from.ReceiveAsync(buffer)) > 0)
                {
                    if (record) lock (_seen) _seen.Write(buffer, 0, n);
                    await to.SendAsync(buffer.AsMemory(0, n));
                }
                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }

        public byte[] Seen() { lock (_seen) return _seen.ToArray(); }

        public void Dispose()
        {
            _listener.Stop();
            lock (_sockets) foreach (var s in _sockets) s.Dispose();
        }
    }
}
