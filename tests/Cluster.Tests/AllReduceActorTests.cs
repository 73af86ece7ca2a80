using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Protocol;
using DistTrain.Worker.Collectives;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// The ring across real actors (messages serialized, as between processes), and one rank driven
/// by a TestProbe that plays its neighbours.
public class AllReduceActorTests() : TestKit(ProtocolConfig.Local(serializeMessages: true))
{
    /// A rank of the ring in an actor: Start with its input, tell the test the total when done.
    sealed class RingPeer : ReceiveActor
    {
        public sealed record Begin(int Rank, int Size, IActorRef Next, long[] Input);
        public sealed record Finished(int Rank, long[] Sums);

        public RingPeer(IActorRef report)
        {
            RingAllReduce? ring = null;
            long[] sums = [];
            int rank = 0;
            var early = new List<GradientChunk>();   // a neighbour may start before our Begin arrives
            void Apply(GradientChunk c) { if (ring!.Handle(c)) report.Tell(new Finished(rank, sums)); }
            Receive<Begin>(b =>
            {
                rank = b.Rank;
                sums = b.Input;
                ring = new RingAllReduce(1, b.Rank, b.Size, c => b.Next.Tell(c, Self));
                if (((IAllReduce)ring).Start(0, sums)) report.Tell(new Finished(rank, sums));
                early.ForEach(Apply);
            });
            Receive<GradientChunk>(c => { if (ring is null) early.Add(c); else Apply(c); });
        }
    }

    [Theory]
    [InlineData(1, 5)]
    [InlineData(2, 3)]
    [InlineData(3, 2)]          // shorter than the ring
    [InlineData(4, 1001)]       // not divisible by N
    [InlineData(5, 300_007)]    // several parts per segment
    public void Ring_of_actors_gives_every_rank_the_plain_sum(int n, int length)
    {
        var rng = new DistTrain.Cnn.DeterministicRandom((ulong)n);
        var inputs = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, length).Select(_ => (long)rng.NextUInt64() >> 24).ToArray()).ToArray();
        var expected = Enumerable.Range(0, length).Select(i => inputs.Sum(x => x[i])).ToArray();
        var peers = Enumerable.Range(0, n).Select(r => Sys.ActorOf(Props.Create(() => new RingPeer(TestActor)), $"peer-{n}-{r}")).ToArray();
        for (int r = 0; r < n; r++) peers[r].Tell(new RingPeer.Begin(r, n, peers[(r + 1) % n], inputs[r]));
        var results = ReceiveN(n, Patience.Training).Cast<RingPeer.Finished>().ToList();
        Assert.Equal(Enumerable.Range(0, n), results.Select(f => f.Rank).Order());
        Assert.All(results, f => Assert.Equal(expected, f.Sums));
    }

    [Fact]
    public void One_rank_against_a_probe_follows_the_ring_schedule()
    {
        // Rank 0 of 2 with [1, 2, 3, 4]: segments are {0,1} and {2,3}.
        var next = CreateTestProbe();
        var sums = new long[] { 1, 2, 3, 4 };
        IAllReduce ring = new RingAllReduce(9, 0, 2, c => next.Ref.Tell(c));
        Assert.False(ring.Start(4, sums));
        var sent = next.ExpectMsg<GradientChunk>();   // reduce-scatter: its own segment 0 goes first
        Assert.Equal((9, 4L, 0, 0), (sent.Generation, sent.Step, sent.Round, sent.Segment));
        Assert.Equal(GradientCodec.Encode([1, 2]), sent.Payload);

        // The peer's segment 1 = [30, 40] arrives; rank 0 now owns the total of segment 1 and passes it on.
        Assert.False(ring.Handle(new GradientChunk(9, 4, 0, 1, 0, 1, GradientCodec.Encode([30, 40]))));
        var gathered = next.ExpectMsg<GradientChunk>();
        Assert.Equal((1, 1), (gathered.Round, gathered.Segment));
        Assert.Equal(GradientCodec.Encode([33, 44]), gathered.Payload);

        // All-gather: the peer's completed segment 0 = [11, 22] arrives and rank 0 is done.
        Assert.True(ring.Handle(new GradientChunk(9, 4, 1, 0, 0, 1, GradientCodec.Encode([11, 22]))));
        Assert.Equal(new long[] { 11, 22, 33, 44 }, sums);
        next.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }
}
