using DistTrain.Protocol;
using DistTrain.Worker.Collectives;
using DistTrain.Worker.DataPlane;

namespace DistTrain.Cluster.Tests;

/// Ring and star against a plain sum, driven by in-memory mailboxes (one FIFO per sender and
/// receiver pair, as Akka guarantees) delivered in a scrambled order across pairs.
public class AllReduceTests
{
    static long[][] Inputs(int ranks, int length, ulong seed)
    {
        var rng = new DistTrain.Cnn.DeterministicRandom(seed);
        return Enumerable.Range(0, ranks).Select(_ => Enumerable.Range(0, length).Select(_ => (long)(rng.NextUInt64() >> 20) - (1L << 43)).ToArray()).ToArray();
    }

    static long[] PlainSum(long[][] inputs) =>
        Enumerable.Range(0, inputs[0].Length).Select(i => inputs.Sum(x => x[i])).ToArray();

    public static TheoryData<int, int> Cases()
    {
        var d = new TheoryData<int, int>();
        foreach (int n in new[] { 1, 2, 3, 4, 5 })
            foreach (int len in new[] { 1, 2, 3, 7, 1000, 131_072 * 2 + 5 })   // shorter than N, not divisible by N, several parts per segment
                d.Add(n, len);
        return d;
    }

    /// A chunk in flight to a rank: an exact message's payload, or a lease on a pooled buffer.
    sealed record Delivery(ChunkHeader Header, byte[]? Exact, ChunkLease? Lease)
    {
        public int Bytes => Exact?.Length ?? Lease!.Length;

        /// Handles it, then gives a lease back at once, as the worker does.
        public bool To(IAllReduce rank)
        {
            try { return rank.Handle(Header, Lease is null ? Exact : Lease.Bytes); }
            finally { Lease?.Dispose(); }
        }
    }

    /// The transport to one rank: exact messages, or with `buffers` leases as the data plane sends.
    sealed class Mailbox(List<Delivery> queue, ChunkBuffers? buffers) : IChunkSink
    {
        public int Send(ChunkHeader header, ReadOnlySpan<long> values)
        {
            queue.Add(buffers is null ? new(header, GradientCodec.Encode(values), null) : new(header, null, ChunkLease.Of(buffers, header, values)));
            return queue[^1].Bytes;
        }
    }

    /// Runs a ring of n ranks to completion. Each rank's incoming chunks wait in a list; the next
    /// delivery picks a random rank and, with `anyOrder`, a random one of its waiting chunks
    /// (otherwise the oldest, as Akka and the data plane deliver them).
    /// With `pooled`, the ranks send chunks on pooled buffers and each chunk is given back right
    /// after it is handled, as the worker does: a buffer reused too early would corrupt a sum.
    static void RingIsExact(int n, int length, ulong seed, bool anyOrder, bool pooled = false)
    {
        var inputs = Inputs(n, length, seed);
        var expected = PlainSum(inputs);
        var sums = inputs.Select(x => (long[])x.Clone()).ToArray();
        var buffers = pooled ? new ChunkBuffers() : null;
        var waiting = Enumerable.Range(0, n).Select(_ => new List<Delivery>()).ToArray();   // list r: from r-1 to r
        var rings = Enumerable.Range(0, n).Select(r => (IAllReduce)new RingAllReduce(3, r, n, new Mailbox(waiting[(r + 1) % n], buffers))).ToArray();
        var done = new bool[n];
        for (int r = 0; r < n; r++) done[r] = rings[r].Start(11, sums[r]);
        var rng = new DistTrain.Cnn.DeterministicRandom(seed + 5);
        var received = new long[n];   // payload bytes delivered to each rank, sent by its predecessor
        while (waiting.Any(q => q.Count > 0))
        {
            var candidates = Enumerable.Range(0, n).Where(r => waiting[r].Count > 0).ToArray();
            int r = candidates[rng.NextInt(candidates.Length)];
            int pick = anyOrder ? rng.NextInt(waiting[r].Count) : 0;
            var chunk = waiting[r][pick];
            waiting[r].RemoveAt(pick);
            Assert.False(done[r], $"rank {r} got a chunk after completing");
            received[r] += chunk.Bytes;
            done[r] = chunk.To(rings[r]);
        }
        Assert.All(done, Assert.True);
        if (buffers is not null) Assert.Equal(buffers.Rented, buffers.Returned);
        for (int r = 0; r < n; r++) Assert.Equal(received[(r + 1) % n], rings[r].SentBytes);
        for (int r = 0; r < n; r++) Assert.Equal(expected, sums[r]);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Ring_gives_every_rank_the_exact_sum(int n, int length) => RingIsExact(n, length, (ulong)(n * 7919 + length), anyOrder: false);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Star_gives_every_rank_the_exact_sum(int n, int length)
    {
        var inputs = Inputs(n, length, (ulong)(n * 31 + length));
        var expected = PlainSum(inputs);
        var sums = inputs.Select(x => (long[])x.Clone()).ToArray();
        var toCoordinator = new Queue<(int From, GradientChunk Chunk)>();
        var stars = Enumerable.Range(0, n).Select(r => (IAllReduce)new StarAllReduce(1, c => toCoordinator.Enqueue((r, c)))).ToArray();
        var reducer = new DistTrain.Coordinator.Cluster.StarReducer(length, n);
        for (int r = 0; r < n; r++) Assert.False(stars[r].Start(2, sums[r]));
        IReadOnlyList<GradientChunk>? total = null;
        var sent = new long[n];
        while (toCoordinator.Count > 0)
        {
            var (from, c) = toCoordinator.Dequeue();
            sent[from] += c.Payload.Length;
            total = reducer.Add($"w{from}", c) ?? total;
        }
        Assert.Equal(sent, stars.Select(s => s.SentBytes));
        Assert.NotNull(total);
        for (int r = 0; r < n; r++)
        {
            bool done = false;
            foreach (var c in total!) done = stars[r].Handle(c);
            Assert.True(done);
            Assert.Equal(expected, sums[r]);
        }
    }

    /// Akka and the data plane keep each sender's order, but the ring must not depend on it: each
    /// (segment, part) is its own causal chain around the ring, so any interleaving is exact.
    [Theory]
    [InlineData(2, 131_072 * 2 + 5)]
    [InlineData(3, 131_072 * 3 + 7)]
    [InlineData(4, 131_072 * 4 + 1)]
    public void Ring_is_exact_when_chunks_between_two_ranks_arrive_out_of_order(int n, int length) =>
        RingIsExact(n, length, (ulong)(n * 31 + length), anyOrder: true);

    [Theory]
    [InlineData(2, 131_072 * 2 + 5)]
    [InlineData(4, 131_072 * 4 + 1)]
    public void Ring_is_exact_with_pooled_chunks_released_as_soon_as_they_are_handled(int n, int length) =>
        RingIsExact(n, length, (ulong)(n * 17 + length), anyOrder: true, pooled: true);

    /// The overlapped step: each rank's contribution arrives layer by layer from the end of the
    /// vector (Ready after each), interleaved at random with chunk deliveries in any order. Sums
    /// start at zero and the contribution is added as it becomes ready, as the worker does.
    [Theory]
    [InlineData(2, 131_072 * 2 + 5, 1)]
    [InlineData(3, 131_072 * 3 + 7, 2)]
    [InlineData(4, 131_072 * 4 + 1, 3)]
    [InlineData(2, 1000, 4)]
    public void Ring_is_exact_when_contributions_become_ready_layer_by_layer_during_the_reduce(int n, int length, ulong seed)
    {
        var inputs = Inputs(n, length, seed);
        var expected = PlainSum(inputs);
        var sums = Enumerable.Range(0, n).Select(_ => new long[length]).ToArray();
        var buffers = new ChunkBuffers();
        var waiting = Enumerable.Range(0, n).Select(_ => new List<Delivery>()).ToArray();
        var rings = Enumerable.Range(0, n).Select(r => new RingAllReduce(3, r, n, new Mailbox(waiting[(r + 1) % n], buffers))).ToArray();
        var rng = new DistTrain.Cnn.DeterministicRandom(seed);
        // Layer boundaries, the same on every rank (one model): ready from the end, one layer at a time.
        var cuts = Enumerable.Range(0, 6).Select(_ => rng.NextInt(length)).Append(0).Distinct().OrderByDescending(c => c).ToArray();
        var readyUpTo = Enumerable.Repeat(length, n).ToArray();
        var nextCut = new int[n];
        var done = new bool[n];
        for (int r = 0; r < n; r++) rings[r].Begin(11, sums[r]);
        while (!done.All(d => d))
        {
            var canReady = Enumerable.Range(0, n).Where(r => nextCut[r] < cuts.Length).ToArray();
            var canDeliver = Enumerable.Range(0, n).Where(r => waiting[r].Count > 0).ToArray();
            Assert.True(canReady.Length + canDeliver.Length > 0, "the ring stalled");
            if (canDeliver.Length == 0 || (canReady.Length > 0 && rng.NextInt(2) == 0))
            {
                int r = canReady[rng.NextInt(canReady.Length)];
                int cut = cuts[nextCut[r]++];
                for (int i = cut; i < readyUpTo[r]; i++) sums[r][i] += inputs[r][i];
                readyUpTo[r] = cut;
                done[r] = rings[r].Ready(cut);
            }
            else
            {
                int r = canDeliver[rng.NextInt(canDeliver.Length)];
                int pick = rng.NextInt(waiting[r].Count);
                var chunk = waiting[r][pick];
                waiting[r].RemoveAt(pick);
                Assert.False(done[r], $"rank {r} got a chunk after completing");
                done[r] = chunk.To(rings[r]);
            }
        }
        Assert.All(waiting, w => Assert.Empty(w));
        Assert.Equal(buffers.Rented, buffers.Returned);
        for (int r = 0; r < n; r++) Assert.Equal(expected, sums[r]);
    }

    [Fact]
    public void Nothing_leaves_a_rank_before_its_contribution_to_it_is_ready()
    {
        var sent = new List<GradientChunk>();
        var ring = new RingAllReduce(1, 0, 2, sent.Add);
        var sums = new long[10];
        ring.Begin(1, sums);
        Assert.Empty(sent);
        // The predecessor's round-0 chunk (segment 1 = elements 5..9) is added at once but held.
        Assert.False(ring.Handle(new GradientChunk(1, 1, 0, 1, 0, 1, GradientCodec.Encode([1, 2, 3, 4, 5]))));
        Assert.Empty(sent);
        Assert.Equal(new long[] { 0, 0, 0, 0, 0, 1, 2, 3, 4, 5 }, sums);
        // Elements 5.. ready: segment 1 (with this rank's 10s) goes on in round 1; segment 0 is not ready yet.
        for (int i = 5; i < 10; i++) sums[i] += 10;
        Assert.False(ring.Ready(5));
        var forwarded = Assert.Single(sent);
        Assert.Equal((1, 1), (forwarded.Round, forwarded.Segment));
        Assert.Equal(GradientCodec.Encode([11, 12, 13, 14, 15]), forwarded.Payload);
        // Everything ready: this rank's own segment 0 leaves in round 0.
        Assert.False(ring.Ready(0));
        Assert.Equal((0, 0), (sent[1].Round, sent[1].Segment));
    }

    [Fact]
    public void A_part_is_passed_on_as_soon_as_it_has_been_added()
    {
        // 2 ranks, segments of 2 parts: rank 0 forwards part 0 of round 1 after receiving only part 0 of round 0.
        int length = 2 * GradientCodec.ValuesPerPart * 2;
        var sent = new List<GradientChunk>();
        IAllReduce ring = new RingAllReduce(1, 0, 2, sent.Add);
        ring.Start(0, new long[length]);
        Assert.Equal(2, sent.Count);                       // round 0: both parts of its own segment
        var half = length / 2;
        var (_, n) = Payload.Part(half, half, 0, 2);
        ring.Handle(new GradientChunk(1, 0, 0, 1, 0, 2, GradientCodec.Encode(new long[n])));
        var forwarded = Assert.Single(sent.Skip(2));
        Assert.Equal((1, 1, 0), (forwarded.Round, forwarded.Segment, forwarded.Part));
    }

    [Fact]
    public void A_chunk_that_does_not_fit_is_rejected_and_not_applied()
    {
        var sent = new List<GradientChunk>();
        IAllReduce ring = new RingAllReduce(1, 0, 2, sent.Add);
        var sums = new long[] { 1, 2, 3, 4 };
        ring.Start(0, sums);
        // Rank 0 expects segment 1 (elements 2..3) in round 0.
        var fits = GradientCodec.Encode([30, 40]);
        GradientChunk Chunk(int generation, int segment, int part, byte[] payload) => new(generation, 0, 0, segment, part, 1, payload);
        var shortOne = Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(1, 1, 0, GradientCodec.Encode([30]))));   // one value short
        Assert.Equal("chunk part 0 of round 0: a gradient payload of 3 bytes for 2 values (1 blocks of up to 16): " +
                     "block 1 needs 2 bytes after its header, 1 are left", shortOne.Message);
        Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(1, 1, 0, GradientCodec.Encode([30, 40, 50]))));        // one value too many
        Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(1, 1, 0, [.. fits, 0])));                              // a byte left over
        Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(1, 0, 0, fits)));                                      // wrong segment
        Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(2, 1, 0, fits)));                                      // other generation
        Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(1, 1, 3, fits)));                                      // part out of range
        Assert.Equal(new long[] { 1, 2, 3, 4 }, sums);
        // None of them counted: the chunk that fits is still taken, once.
        Assert.False(ring.Handle(Chunk(1, 1, 0, fits)));
        Assert.Equal(new long[] { 1, 2, 33, 44 }, sums);
        Assert.Throws<InvalidChunkException>(() => ring.Handle(Chunk(1, 1, 0, fits)));
    }

    /// The payload is checked whole before anything is added: a chunk whose first blocks decode
    /// and whose last does not must leave the reduce-scatter's sums as they were.
    [Theory]
    [InlineData("width")]
    [InlineData("shift")]
    [InlineData("truncated")]
    [InlineData("left over")]
    public void A_payload_malformed_in_its_last_block_adds_nothing(string fault)
    {
        var sent = new List<GradientChunk>();
        IAllReduce ring = new RingAllReduce(1, 0, 2, sent.Add);
        var sums = Enumerable.Range(0, 100).Select(i => (long)i).ToArray();   // segment 1: elements 50..99, 4 blocks
        var before = (long[])sums.Clone();
        ring.Start(0, sums);
        var values = Enumerable.Range(0, 50).Select(i => 100L * i + 1).ToArray();   // 2 bytes each
        var payload = GradientCodec.Encode(values);
        int lastHeader = payload.Length - 2 - 2 * 2;   // the last block: 2 values of 2 bytes
        payload = fault switch
        {
            "width" => payload.Select((b, i) => i == lastHeader ? (byte)9 : b).ToArray(),
            "shift" => payload.Select((b, i) => i == lastHeader + 1 ? (byte)64 : b).ToArray(),
            "truncated" => payload[..^1],
            _ => [.. payload, 7],
        };
        var e = Assert.Throws<InvalidChunkException>(() => ring.Handle(new GradientChunk(1, 0, 0, 1, 0, 1, payload)));
        Assert.Contains(fault == "truncated" ? "block 4 needs 4 bytes after its header, 3 are left" : fault == "left over" ? "1 bytes are left over" : $"block 4 has {fault}", e.Message);
        Assert.Equal(before, sums);
    }

    [Fact]
    public void The_stars_hub_rejects_a_malformed_part_and_still_takes_it_whole_after()
    {
        var reducer = new DistTrain.Coordinator.Cluster.StarReducer(3, 2);
        var good = GradientCodec.Encode([1, 2, 3]);
        Assert.Throws<InvalidChunkException>(() => reducer.Add("w0", new GradientChunk(1, 1, 0, 0, 0, 1, good[..^1])));
        Assert.Null(reducer.Add("w0", new GradientChunk(1, 1, 0, 0, 0, 1, good)));
        Assert.Throws<InvalidChunkException>(() => reducer.Add("w0", new GradientChunk(1, 1, 0, 0, 0, 1, good)));   // now a duplicate
        var total = reducer.Add("w1", new GradientChunk(1, 1, 0, 0, 0, 1, GradientCodec.Encode([10, 20, 30])));
        var sums = new long[3];
        GradientCodec.Decode(Assert.Single(total!).Payload, sums, add: false);
        Assert.Equal(new long[] { 11, 22, 33 }, sums);
    }
}

public class EvaluationPiecesTests
{
    [Theory]
    [InlineData(10_000, 784, 1)]
    [InlineData(10_000, 784, 3)]
    [InlineData(200, 784, 2)]
    [InlineData(5, 784, 4)]      // fewer samples than workers
    public void Pieces_cover_the_test_split_in_order_and_each_fits_one_message(int count, int sampleBytes, int workers)
    {
        var pieces = DistTrain.Coordinator.Cluster.StepWork.EvaluationPieces(count, sampleBytes, workers, ProtocolConfig.MaxPayloadBytes);
        Assert.Equal(Enumerable.Range(0, count), pieces.SelectMany(p => Enumerable.Range(p.Start, p.Count)));
        Assert.All(pieces, p => Assert.True((long)p.Count * sampleBytes <= ProtocolConfig.MaxPayloadBytes));
        Assert.Equal(pieces.Select(p => p.Worker).Order(), pieces.Select(p => p.Worker));   // contiguous runs per worker
        Assert.All(pieces, p => Assert.InRange(p.Worker, 0, workers - 1));
        if (count >= workers) Assert.Equal(workers, pieces.Select(p => p.Worker).Distinct().Count());
    }
}
