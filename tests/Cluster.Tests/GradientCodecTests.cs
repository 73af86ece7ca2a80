using DistTrain.Protocol;

namespace DistTrain.Cluster.Tests;

/// The gradient wire encoding against its definition: lossless for every int64, each block with
/// the width and shift the format asks for, never longer than MaxEncodedBytes, and every malformed
/// payload refused before anything is applied.
public class GradientCodecTests
{
    /// Values of every magnitude a fixed-point sum can hold (|v| < 2^62) and then some: each with a
    /// random bit length, sign and count of trailing zeros, mixed with zeros and the extremes.
    static long[] Values(int count, ulong seed)
    {
        var rng = new DistTrain.Cnn.DeterministicRandom(seed);
        var values = new long[count];
        for (int i = 0; i < count; i++)
        {
            long v = rng.NextInt(6) switch
            {
                0 => 0,
                1 => rng.NextInt(2) == 0 ? (1L << 62) - 1 : -(1L << 62),
                2 => rng.NextInt(2) == 0 ? long.MaxValue : long.MinValue,
                _ => (long)(rng.NextUInt64() >> (1 + rng.NextInt(63))) << rng.NextInt(20),
            };
            values[i] = rng.NextInt(2) == 0 ? v : -v;
        }
        return values;
    }

    static long[] RoundTrip(long[] values, long[] start, bool add)
    {
        var target = (long[])start.Clone();
        GradientCodec.Decode(GradientCodec.Encode(values), target, add);
        return target;
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Values_of_every_magnitude_come_back_exactly_copied_or_added(int length)
    {
        var values = Values(length, (ulong)length + 1);
        var start = Values(length, (ulong)length + 1000).Select(v => v >> 2).ToArray();   // any old contents
        Assert.Equal(values, RoundTrip(values, start, add: false));
        Assert.Equal(start.Zip(values, (a, b) => a + b), RoundTrip(values, start, add: true));
    }

    public static TheoryData<int> Lengths() => [.. Enumerable.Range(0, 41), 1000, 32_262];

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Into_a_buffer_of_MaxEncodedBytes_or_one_of_exactly_its_length_the_encoding_is_the_same(int length)
    {
        var values = Values(length, (ulong)length + 7);
        var exact = GradientCodec.Encode(values);
        Assert.True(exact.Length <= GradientCodec.MaxEncodedBytes(length) - 8);
        // Each destination a slice of a larger canvas: nothing may be written past the slice.
        foreach (int room in new[] { GradientCodec.MaxEncodedBytes(length), exact.Length })
        {
            var canvas = new byte[room + 16];
            Array.Fill(canvas, (byte)0xA5);
            Assert.Equal(exact.Length, GradientCodec.Encode(values, canvas.AsSpan(0, room)));
            Assert.Equal(exact, canvas[..exact.Length]);
            Assert.All(canvas[room..], b => Assert.Equal(0xA5, b));
        }
        if (exact.Length > 0)
        {
            var e = Assert.Throws<ArgumentException>(() => GradientCodec.Encode(values, new byte[exact.Length - 1]));
            Assert.Contains($"too short for the encoding of {length} values", e.Message);
        }
    }

    public static TheoryData<int, int> WidthsAndShifts()
    {
        var d = new TheoryData<int, int> { { 0, 0 } };
        // A value needing w bytes takes 8(w - 1) + 1 bits at least: shifted by s it must still fit 64.
        for (int w = 1; w <= 8; w++)
            for (int s = 0; s <= 63 - 8 * (w - 1); s++)
                d.Add(w, s);
        return d;
    }

    /// Each block's header is its width and shift by the definition, and its values take w bytes each.
    [Theory]
    [MemberData(nameof(WidthsAndShifts))]
    public void A_block_takes_the_fewest_bytes_for_its_values_after_their_common_trailing_zeros(int w, int s)
    {
        var rng = new DistTrain.Cnn.DeterministicRandom((ulong)(w * 64 + s));
        var block = new long[16];
        if (w > 0)
        {
            // Random multiples of 2^s that fit in w bytes after the shift (and in 64 bits before),
            // some zeros; then, among the first 9, one that needs w bytes (-2^8(w-1), the narrowest
            // such) and an odd multiple of 2^s, which fixes the shift.
            int bits = Math.Min(8 * w - 1, 63 - s);
            for (int i = 0; i < 16; i++) block[i] = rng.NextInt(3) == 0 ? 0 : ((long)rng.NextUInt64() >> (63 - bits)) << s;
            int wide = rng.NextInt(9), odd = (wide + 1 + rng.NextInt(8)) % 9;
            block[wide] = (w == 1 ? -1L : -(1L << (8 * (w - 1)))) << s;
            block[odd] = 1L << s;
        }
        // A second, shorter block (its first 9 values) of the same shape: the last block of a part.
        var values = block.Concat(block.Take(9)).ToArray();
        var bytes = GradientCodec.Encode(values);
        Assert.Equal(new byte[] { (byte)w, (byte)s }, bytes[..2]);
        Assert.Equal(new byte[] { (byte)w, (byte)s }, bytes[(2 + 16 * w)..(2 + 16 * w + 2)]);
        Assert.Equal(2 + 16 * w + 2 + 9 * w, bytes.Length);
        Assert.Equal(values, RoundTrip(values, new long[values.Length], add: false));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(-1L)]
    [InlineData(1L << 40)]
    [InlineData(-(1L << 62))]
    [InlineData(long.MinValue)]
    [InlineData(long.MaxValue)]
    public void A_block_of_equal_values_round_trips(long value)
    {
        var values = Enumerable.Repeat(value, 37).ToArray();
        Assert.Equal(values, RoundTrip(values, Values(37, 3), add: false));
    }

    /// What the wire gains: sums as training makes them (mostly zero, in runs: dead units, unused
    /// pixels), far below raw; and values that need all 8 bytes, at the bound exactly.
    [Fact]
    public void Sparse_sums_take_far_fewer_bytes_than_raw_and_full_width_ones_the_bound()
    {
        var rng = new DistTrain.Cnn.DeterministicRandom(5);
        var sparse = new long[GradientCodec.ValuesPerPart];
        for (int i = 0; i < sparse.Length;)
        {
            int run = 1 + rng.NextInt(200);
            bool zero = rng.NextInt(5) != 0;
            for (int k = 0; k < run && i < sparse.Length; k++, i++)
                sparse[i] = zero ? 0 : (long)(rng.NextUInt64() >> (30 + rng.NextInt(14))) - (1L << (33 - rng.NextInt(14)));
        }
        int encoded = GradientCodec.Encode(sparse).Length;
        Assert.Equal(DefinedLength(sparse), encoded);
        Assert.True(encoded < sparse.Length * 8 / 5, $"{encoded} bytes for {sparse.Length * 8} raw");
        Assert.Equal(DefinedLength(Values(1000, 9)), GradientCodec.Encode(Values(1000, 9)).Length);

        var wide = Enumerable.Range(0, 1000).Select(i => long.MaxValue - 2 * i).ToArray();   // odd, 8 bytes each
        Assert.Equal(GradientCodec.MaxEncodedBytes(wide.Length) - 8, GradientCodec.Encode(wide).Length);
    }

    /// The length by the format's definition, value by value: per block the common trailing zeros,
    /// then the fewest bytes whose two's-complement range holds every shifted value.
    static int DefinedLength(long[] values)
    {
        static int Bytes(long m)
        {
            for (int n = 1; n < 8; n++)
                if (m >= -(1L << (8 * n - 1)) && m < 1L << (8 * n - 1)) return n;
            return 8;
        }
        int length = 0;
        foreach (var block in values.Chunk(16))
        {
            long any = block.Aggregate(0L, (a, v) => a | v);
            int s = any == 0 ? 0 : System.Numerics.BitOperations.TrailingZeroCount(any);
            length += 2 + block.Length * (any == 0 ? 0 : block.Max(v => Bytes(v >> s)));
        }
        return length;
    }

    [Fact]
    public void A_part_of_ValuesPerPart_fits_the_protocols_part_in_the_worst_case_and_one_more_value_would_not()
    {
        Assert.True(GradientCodec.MaxEncodedBytes(GradientCodec.ValuesPerPart) <= ProtocolConfig.PartBytes);
        Assert.True(GradientCodec.MaxEncodedBytes(GradientCodec.ValuesPerPart + 1) > ProtocolConfig.PartBytes);
        foreach (int count in new[] { 0, 1, GradientCodec.ValuesPerPart, GradientCodec.ValuesPerPart + 1, 1_199_882 })
        {
            int parts = GradientCodec.Parts(count);
            Assert.All(Enumerable.Range(0, parts), p => Assert.InRange(Payload.Part(0, count, p, parts).Length, 0, GradientCodec.ValuesPerPart));
            Assert.Equal(count == 0 ? 1 : (count + GradientCodec.ValuesPerPart - 1) / GradientCodec.ValuesPerPart, parts);
        }
    }

    public static TheoryData<string, byte[], int, string> Malformed()
    {
        var twenty = GradientCodec.Encode(Enumerable.Range(1, 20).Select(i => (long)i * 3).ToArray());   // blocks of 16 and 4, width 1
        byte[] With(int at, byte value) { var b = (byte[])twenty.Clone(); b[at] = value; return b; }
        const string Twenty = "a gradient payload of 24 bytes for 20 values (2 blocks of up to 16): ";
        return new()
        {
            { "width", With(0, 9), 20, Twenty + "block 1 has width 9, expected 0 to 8 bytes" },
            { "width of a later block", With(18, 200), 20, Twenty + "block 2 has width 200, expected 0 to 8 bytes" },
            { "shift", With(1, 64), 20, Twenty + "block 1 has shift 64, expected 0 to 63 bits" },
            { "shift of a later block", With(19, 255), 20, Twenty + "block 2 has shift 255, expected 0 to 63 bits" },
            { "values cut short", twenty[..^1], 20, "a gradient payload of 23 bytes for 20 values (2 blocks of up to 16): block 2 needs 4 bytes after its header, 3 are left" },
            { "header cut short", twenty[..19], 20, "a gradient payload of 19 bytes for 20 values (2 blocks of up to 16): it ends at block 2's header" },
            { "empty", [], 1, "a gradient payload of 0 bytes for 1 values (1 blocks of up to 16): it ends at block 1's header" },
            { "bytes left over", [.. twenty, 0, 0], 20, "a gradient payload of 26 bytes for 20 values (2 blocks of up to 16): 2 bytes are left over after the last block" },
            { "fewer values than expected", twenty, 21, "a gradient payload of 24 bytes for 21 values (2 blocks of up to 16): block 2 needs 5 bytes after its header, 4 are left" },
            { "more values than expected", twenty, 19, "a gradient payload of 24 bytes for 19 values (2 blocks of up to 16): 1 bytes are left over after the last block" },
            { "a block more than expected", twenty, 16, "a gradient payload of 24 bytes for 16 values (1 blocks of up to 16): 6 bytes are left over after the last block" },
            { "bytes for no values", [0, 0], 0, "a gradient payload of 2 bytes for 0 values (0 blocks of up to 16): 2 bytes are left over after the last block" },
        };
    }

    /// Hostile bytes are refused with what was expected, and the target keeps its values (the
    /// whole payload is checked before any value is added or copied).
    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_payload_is_refused_with_what_was_expected_and_changes_nothing(string fault, byte[] payload, int count, string message)
    {
        foreach (bool add in new[] { true, false })
        {
            var target = Enumerable.Range(0, count).Select(i => (long)i - 7).ToArray();
            var before = (long[])target.Clone();
            var e = Assert.Throws<InvalidDataException>(() => GradientCodec.Decode(payload, target, add));
            Assert.Equal(message, e.Message);
            Assert.Equal(before, target);
        }
        Assert.NotEmpty(fault);
    }

    /// Every single-byte corruption and every cut of a payload either decodes (to something) or is
    /// refused: nothing reads outside the payload or throws anything else.
    [Fact]
    public void No_corruption_or_cut_of_a_payload_reads_out_of_bounds()
    {
        var values = Values(40, 11);
        var bytes = GradientCodec.Encode(values);
        var target = new long[40];
        for (int cut = 0; cut < bytes.Length; cut++)
            Assert.Throws<InvalidDataException>(() => GradientCodec.Decode(bytes.AsSpan(0, cut), target, add: false));
        var rng = new DistTrain.Cnn.DeterministicRandom(13);
        for (int trial = 0; trial < 2000; trial++)
        {
            var b = (byte[])bytes.Clone();
            b[rng.NextInt(b.Length)] = (byte)rng.NextInt(256);
            try { GradientCodec.Decode(b, target, add: true); }
            catch (InvalidDataException) { }
        }
    }
}
