using System.Collections.Concurrent;
using System.Net.Sockets;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// The gradient data plane: what a peer with the job token sends arrives whole and in order;
/// nobody else gets a chunk in.
public sealed class DataPlaneTests : IDisposable
{
    readonly BlockingCollection<(string From, GradientChunk Chunk)> _received = new();
    readonly ConcurrentQueue<string> _log = new();
    readonly DataPlane _plane;

    public DataPlaneTests() => _plane = new DataPlane("127.0.0.1", 0, "job-token", (from, c) => _received.Add((from, c)), _log.Enqueue);

    public void Dispose() => _plane.Dispose();

    static GradientChunk Chunk(int part, int longs) =>
        new(7, 42, part % 3, part % 5, part, 100, Payload.FromLongs(Enumerable.Range(0, longs).Select(i => (long)i * part - (1L << 40)).ToArray()));

    [Fact]
    public void Chunks_from_a_peer_with_the_token_arrive_whole_and_in_order()
    {
        using var sender = new DataPlane("127.0.0.1", 0, "job-token", (_, _) => { }, _ => { });
        using var link = sender.Connect($"127.0.0.1:{_plane.Port}", "akka.tcp://disttrain@10.0.0.2:4054/user/worker#1");
        var sent = Enumerable.Range(0, 20).Select(p => Chunk(p, p * 1000 + 1)).ToList();
        foreach (var c in sent) link.Send(c);
        foreach (var expected in sent)
        {
            Assert.True(_received.TryTake(out var got, Patience.Reply), "a chunk did not arrive");
            Assert.Equal("akka.tcp://disttrain@10.0.0.2:4054/user/worker#1", got.From);
            Assert.Equal((expected.Generation, expected.Step, expected.Round, expected.Segment, expected.Part, expected.Parts),
                         (got.Chunk.Generation, got.Chunk.Step, got.Chunk.Round, got.Chunk.Segment, got.Chunk.Part, got.Chunk.Parts));
            Assert.True(got.Chunk.IsPooled);   // received into a pooled buffer, released by its receiver
            Assert.Equal(expected.Payload, got.Chunk.Bytes.ToArray());
            got.Chunk.Release();
        }
    }

    [Fact]
    public void A_sender_without_the_job_token_is_refused_and_nothing_it_sends_arrives()
    {
        using var stranger = new DataPlane("127.0.0.1", 0, "another-token", (_, _) => { }, _ => { });
        using (var link = stranger.Connect($"127.0.0.1:{_plane.Port}", "akka.tcp://disttrain@127.0.0.1:1/user/worker"))
            for (int p = 0; p < 5; p++) link.Send(Chunk(p, 10));
        Assert.False(_received.TryTake(out _, TimeSpan.FromSeconds(2)));
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("refused a connection")), Patience.Reply), string.Join("\n", _log));
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
        using var link = _plane.Connect($"127.0.0.1:{port}", "peer", fallback.Add, TimeSpan.FromSeconds(1));
        var sent = Enumerable.Range(0, 5).Select(p => Chunk(p, 100)).ToList();
        foreach (var c in sent) link.Send(c);
        foreach (var expected in sent)
        {
            Assert.True(fallback.TryTake(out var got, Patience.Reply), "a chunk did not reach the fallback");
            Assert.Same(expected, got);
        }
        Assert.Contains(_log, l => l.Contains("sending gradients over Akka.Remote instead"));
    }

    [Fact]
    public void When_the_connection_breaks_mid_step_the_steps_chunks_are_sent_again_over_the_fallback()
    {
        var receiver = new DataPlane("127.0.0.1", 0, "job-token", (from, c) => _received.Add((from, c)), _ => { });
        var fallback = new BlockingCollection<GradientChunk>();
        using var link = _plane.Connect($"127.0.0.1:{receiver.Port}", "peer", fallback.Add);
        var early = Enumerable.Range(0, 3).Select(p => Chunk(p, 100)).ToList();   // all of step 42
        foreach (var c in early) link.Send(c);
        for (int i = 0; i < 3; i++) Assert.True(_received.TryTake(out _, Patience.Reply));
        receiver.Dispose();   // the successor's end goes away mid-step
        var later = new List<GradientChunk>();
        for (int p = 3; p < 200 && fallback.Count == 0; p++)
        {
            var c = Chunk(p, 100_000);
            later.Add(c);
            link.Send(c);
            SpinWait.SpinUntil(() => fallback.Count > 0, 20);   // paced, so the break shows before the 200th chunk
        }
        var resent = new List<GradientChunk>();
        while (fallback.TryTake(out var c, TimeSpan.FromSeconds(2))) resent.Add(c);
        // Everything written of this step goes again, then everything not yet written, in order.
        Assert.Equal(early, resent.Take(3));
        Assert.Equal(later[^1], resent[^1]);
        Assert.Equal(resent.Count, resent.Distinct().Count());
        Assert.Contains(_log, l => l.Contains("broke"));
    }

    [Fact]
    public void A_disposed_link_sends_nothing_more_anywhere()
    {
        var fallback = new BlockingCollection<GradientChunk>();
        var link = _plane.Connect("127.0.0.1:1", "peer", fallback.Add, TimeSpan.FromSeconds(3));
        link.Send(Chunk(0, 10));
        link.Dispose();   // a new generation: this one's chunks no longer matter
        link.Send(Chunk(1, 10));
        Assert.False(fallback.TryTake(out _, TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void A_frame_above_the_limit_closes_the_connection_undelivered()
    {
        using var sender = new DataPlane("127.0.0.1", 0, "job-token", (_, _) => { }, _ => { });
        using var link = sender.Connect($"127.0.0.1:{_plane.Port}", "peer");
        link.Send(new GradientChunk(1, 1, 0, 0, 0, 1, new byte[ProtocolConfig.MaximumFrameBytes + 8]));
        Assert.True(SpinWait.SpinUntil(() => _log.Any(l => l.Contains("a frame of")), Patience.Reply), string.Join("\n", _log));
        Assert.Empty(_received);
    }
}
