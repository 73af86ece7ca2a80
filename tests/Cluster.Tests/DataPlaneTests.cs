using System.Collections.Concurrent;
using System.Net.Sockets;
using DistTrain.Protocol;
using DistTrain.Worker.DataPlane;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// The gradient data plane: what a peer with the job token sends arrives whole and in order;
/// nobody else gets a chunk in; every buffer it leases goes back to its pool.
public sealed class DataPlaneTests : IDisposable
{
    readonly BlockingCollection<(string From, ChunkLease Chunk)> _received = new();
    readonly ConcurrentQueue<string> _log = new();
    /// The receiving side's pool and the sending side's, counted apart.
    readonly ChunkBuffers _inBuffers = new(), _outBuffers = new();
    readonly GradientDataPlane _plane;

    public DataPlaneTests() => _plane = new GradientDataPlane("127.0.0.1", 0, "job-token", (from, c) => _received.Add((from, c)), _log.Enqueue, _inBuffers);

    public void Dispose() => _plane.Dispose();

    GradientDataPlane Sender(string token = "job-token") => new("127.0.0.1", 0, token, (_, c) => c.Dispose(), _log.Enqueue, _outBuffers);

    static (ChunkHeader Header, long[] Values) Chunk(int part, int longs) =>
        (new ChunkHeader(7, 42, part % 3, part % 5, part, 100), Enumerable.Range(0, longs).Select(i => (long)i * part - (1L << 40)).ToArray());

    static void AllReturned(ChunkBuffers buffers) =>
        Assert.True(SpinWait.SpinUntil(() => buffers.Returned == buffers.Rented, Patience.Reply),
                    $"{buffers.Rented} buffers rented, {buffers.Returned} returned");

    [Fact]
    public void Chunks_from_a_peer_with_the_token_arrive_whole_and_in_order()
    {
        using var sender = Sender();
        var link = sender.Connect($"127.0.0.1:{_plane.Port}", "akka.tcp://disttrain@10.0.0.2:4054/user/worker#1");
        var sent = Enumerable.Range(0, 20).Select(p => Chunk(p, p * 1000 + 1)).ToList();
        foreach (var (header, values) in sent) link.Send(header, values);
        foreach (var (header, values) in sent)
        {
            Assert.True(_received.TryTake(out var got, Patience.Reply), "a chunk did not arrive");
            Assert.Equal("akka.tcp://disttrain@10.0.0.2:4054/user/worker#1", got.From);
            Assert.Equal(header, got.Chunk.Header);
            Assert.Equal(GradientCodec.Encode(values), got.Chunk.Bytes.ToArray());
            got.Chunk.Dispose();
        }
        AllReturned(_inBuffers);
        link.Dispose();   // its resend history goes back with it
        AllReturned(_outBuffers);
        Assert.Equal(20, _outBuffers.Rented);
    }

    [Fact]
    public void A_sender_without_the_job_token_is_refused_and_nothing_it_sends_arrives()
    {
        using var stranger = Sender("another-token");
        using (var link = stranger.Connect($"127.0.0.1:{_plane.Port}", "akka.tcp://disttrain@127.0.0.1:1/user/worker"))
            for (int p = 0; p < 5; p++) { var (h, v) = Chunk(p, 10); link.Send(h, v); }
        Assert.False(_received.TryTake(out _, TimeSpan.FromSeconds(2)));
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("refused a connection")), Patience.Reply), string.Join("\n", _log));
        AllReturned(_outBuffers);
    }

    /// More strangers at once than the limit of unproven connections: those over it are refused
    /// and must not count for ever, or no peer would be greeted again.
    [Fact]
    public void After_a_burst_of_100_strangers_a_peer_is_still_greeted_at_once()
    {
        var strangers = new List<TcpClient>();
        for (int i = 0; i < 100; i++) strangers.Add(new TcpClient("127.0.0.1", _plane.Port));
        // Until every one of them has been seen by the listener (refused or waiting for its hello).
        Assert.True(SpinWait.SpinUntil(() => { try { return strangers.All(c => c.Connected); } catch (ObjectDisposedException) { return true; } }, Patience.Reply));
        Thread.Sleep(500);
        foreach (var c in strangers) c.Dispose();
        using var sender = Sender();
        using var link = sender.Connect($"127.0.0.1:{_plane.Port}", "akka.tcp://disttrain@10.0.0.2:4054/user/worker#1");
        var (header, values) = Chunk(1, 100);
        link.Send(header, values);
        Assert.True(_received.TryTake(out var got, TimeSpan.FromSeconds(2)), "the peer was not greeted within 2 s: " + string.Join("\n", _log));
        Assert.Equal(header, got.Chunk.Header);
        got.Chunk.Dispose();
    }

    [Fact]
    public void Bytes_that_are_not_a_hello_are_refused()
    {
        using var client = new TcpClient("127.0.0.1", _plane.Port);
        var stream = client.GetStream();
        var greeting = new byte[40];
        stream.ReadExactly(greeting);
        stream.Write(new byte[4096]);   // no magic, no MAC
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("refused a connection")), Patience.Reply), string.Join("\n", _log));
        Assert.Empty(_received);
    }

    [Fact]
    public void When_the_successors_data_plane_cannot_be_reached_the_chunks_go_to_the_fallback()
    {
        // A port nobody listens on: the connection is refused until the link's patience runs out.
        int port = Ports.Free();
        var fallback = new BlockingCollection<GradientChunk>();
        using var sender = Sender();
        using var link = sender.Connect($"127.0.0.1:{port}", "peer", fallback.Add, TimeSpan.FromSeconds(1));
        var sent = Enumerable.Range(0, 5).Select(p => Chunk(p, 100)).ToList();
        foreach (var (h, v) in sent) link.Send(h, v);
        foreach (var (header, values) in sent)
        {
            Assert.True(fallback.TryTake(out var got, Patience.Reply), "a chunk did not reach the fallback");
            Assert.Equal(header, got.Header);
            Assert.Equal(GradientCodec.Encode(values), got.Payload);   // an exact copy: its buffer went back
        }
        AllReturned(_outBuffers);
        Assert.Contains(_log, l => l.Contains("sending gradients over Akka.Remote instead"));
    }

    [Fact]
    public void When_the_connection_breaks_mid_step_the_steps_chunks_are_sent_again_over_the_fallback()
    {
        var receiver = new GradientDataPlane("127.0.0.1", 0, "job-token", (from, c) => _received.Add((from, c)), _ => { }, _inBuffers);
        var fallback = new BlockingCollection<GradientChunk>();
        using var link = _plane.Connect($"127.0.0.1:{receiver.Port}", "peer", fallback.Add);
        var early = Enumerable.Range(0, 3).Select(p => Chunk(p, 100)).ToList();   // all of step 42
        foreach (var (h, v) in early) link.Send(h, v);
        for (int i = 0; i < 3; i++) { Assert.True(_received.TryTake(out var c, Patience.Reply)); c.Chunk.Dispose(); }
        receiver.Dispose();   // the successor's end goes away mid-step
        var later = new List<ChunkHeader>();
        for (int p = 3; p < 200 && fallback.Count == 0; p++)
        {
            var (h, v) = Chunk(p, 100_000);
            later.Add(h);
            link.Send(h, v);
            SpinWait.SpinUntil(() => fallback.Count > 0, 20);   // paced, so the break shows before the 200th chunk
        }
        var resent = new List<ChunkHeader>();
        while (fallback.TryTake(out var c, TimeSpan.FromSeconds(2))) resent.Add(c.Header);
        // Everything written of this step goes again, then everything not yet written, in order.
        Assert.Equal(early.Select(c => c.Header), resent.Take(3));
        Assert.Equal(later[^1], resent[^1]);
        Assert.Equal(resent.Count, resent.Distinct().Count());
        Assert.Contains(_log, l => l.Contains("broke"));
        link.Dispose();
        while (_received.TryTake(out var c)) c.Chunk.Dispose();
        AllReturned(_inBuffers);   // the plane under test is the sender here: one pool for both sides
    }

    [Fact]
    public void A_disposed_link_sends_nothing_more_anywhere_and_gives_its_queue_back()
    {
        var fallback = new BlockingCollection<GradientChunk>();
        using var sender = Sender();
        var link = sender.Connect("127.0.0.1:1", "peer", fallback.Add, TimeSpan.FromSeconds(3));
        for (int p = 0; p < 5; p++) { var (h, v) = Chunk(p, 10); link.Send(h, v); }
        link.Dispose();   // a new generation: this one's chunks no longer matter
        var (h1, v1) = Chunk(9, 10);
        link.Send(h1, v1);
        Assert.False(fallback.TryTake(out _, TimeSpan.FromSeconds(5)));
        Assert.Equal(6, _outBuffers.Rented);
        AllReturned(_outBuffers);
    }

    [Fact]
    public void A_frame_above_the_limit_closes_the_connection_undelivered()
    {
        using var sender = Sender();
        using var link = sender.Connect($"127.0.0.1:{_plane.Port}", "peer");
        var wide = new long[ProtocolConfig.MaximumFrameBytes / 8 + 1];
        Array.Fill(wide, long.MaxValue);   // 8 bytes each in the encoding: zeros would take 2 bytes a block
        link.Send(new ChunkHeader(1, 1, 0, 0, 0, 1), wide);
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("a frame of")), Patience.Reply), string.Join("\n", _log));
        Assert.Empty(_received);
        Assert.Equal(0, _inBuffers.Rented);   // refused before any buffer was leased for it
    }

    [Fact]
    public void A_frame_cut_off_mid_payload_gives_its_buffer_back_undelivered()
    {
        using (var client = new TcpClient("127.0.0.1", _plane.Port))
        {
            var stream = client.GetStream();
            var handshake = new Handshake("job-token");
            handshake.WriteHello(stream, Handshake.ReadGreeting(stream, "test"), "peer");
            var header = new byte[FrameCodec.HeaderBytes];
            FrameCodec.Write(new ChunkHeader(1, 1, 0, 0, 0, 1), 800, header);
            stream.Write(header);
            stream.Write(new byte[400]);   // half the payload, then the sender is gone
            Assert.True(SpinWait.SpinUntil(() => _inBuffers.Rented == 1, TimeSpan.FromSeconds(10)), "the frame was never started");
        }
        AllReturned(_inBuffers);
        Assert.Empty(_received);
    }

    [Fact]
    public void A_lease_gives_its_buffer_back_once_and_cannot_be_read_after()
    {
        var buffers = new ChunkBuffers();
        var lease = ChunkLease.Of(buffers, new ChunkHeader(1, 2, 0, 0, 0, 1), [1, -2, 1L << 50]);
        var exact = lease.ToMessage();
        Assert.Equal(GradientCodec.Encode([1, -2, 1L << 50]), exact.Payload);
        var back = MessagePack.MessagePackSerializer.Deserialize<GradientChunk>(MessagePack.MessagePackSerializer.Serialize(exact));
        Assert.Equal(exact.Payload, back.Payload);
        Assert.Equal(lease.Header, back.Header);
        lease.Dispose();
        lease.Dispose();
        Assert.Equal((1L, 1L), (buffers.Rented, buffers.Returned));
        Assert.Throws<ObjectDisposedException>(() => lease.Bytes.Length);
    }

    [Fact]
    public void A_frame_header_is_the_chunk_header_and_the_payload_length_little_endian()
    {
        var header = new ChunkHeader(-3, (1L << 40) + 5, 2, 7, 11, 13);
        var bytes = new byte[FrameCodec.HeaderBytes];
        FrameCodec.Write(header, 4096, bytes);
        Assert.Equal((header, 4096), FrameCodec.Read(bytes));
        Assert.Equal(new byte[] { 0xFD, 0xFF, 0xFF, 0xFF, 5, 0, 0, 0, 0, 1, 0, 0 }, bytes[..12]);   // generation, then step
        Assert.Equal(new byte[] { 0, 16, 0, 0 }, bytes[28..]);                                         // payload bytes last
    }

    [Fact]
    public void Once_its_pool_is_warm_a_link_sends_without_allocating_gradient_sized_arrays()
    {
        using var sender = Sender();
        using var link = sender.Connect($"127.0.0.1:{_plane.Port}", "peer");
        var values = new long[GradientCodec.ValuesPerPart];   // one full part: a large-object array each if not pooled
        long allocated = 0;
        for (int step = 0; step < 10; step++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int part = 0; part < 4; part++) link.Send(new ChunkHeader(1, step, 0, 0, part, 4), values);
            if (step >= 5) allocated += GC.GetAllocatedBytesForCurrentThread() - before;
            // The writer gives a step's buffers back two steps later, once they leave its resend history.
            for (int part = 0; part < 4; part++) { Assert.True(_received.TryTake(out var c, Patience.Reply)); c.Chunk.Dispose(); }
            // The writer gives them back just after writing the next steps' chunks, which may be after the
            // receiver has them: wait for it, so that a step never finds the pool short by a race.
            Assert.True(SpinWait.SpinUntil(() => _outBuffers.Rented - _outBuffers.Returned <= 8, Patience.Reply), "the resend history kept more than two steps");
        }
        Assert.True(allocated < ProtocolConfig.PartBytes / 4, $"20 sends allocated {allocated} bytes");
    }
}
