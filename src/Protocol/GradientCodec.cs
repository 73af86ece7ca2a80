using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DistTrain.Protocol;

/// The all-reduce's wire encoding of the exact fixed-point sums, lossless. Most sums are exactly 0
/// during training and the others far below 2^63 (measured on mnist-cnn: about 80% zeros, and at
/// step 0 71% need 5 bytes), so raw int64s spend most of their bytes on sign copies and zeros.
/// Blocks of 16 values (the last may be shorter), each a 2-byte header, width w (0 to 8) then
/// shift s (0 to 63), and then every value's (v >> s) as its low w bytes in two's complement,
/// little-endian. s is the block's common trailing zero bits, so (v >> s) << s == v; w is the
/// fewest bytes that hold every (v >> s) sign-extended; an all-zero block is its header alone.
public static class GradientCodec
{
    const int BlockValues = 16;
    const int HeaderBytes = 2;
    /// Values are written as whole 8-byte stores, advancing by their width: the last one's store
    /// reaches up to 8 bytes past its own.
    const int Slack = 8;

    /// A destination this long is always enough for `count` values, and takes the fast path throughout.
    public static int MaxEncodedBytes(int count) =>
        checked((int)((long)count * 8 + (long)HeaderBytes * Blocks(count) + Slack));

    /// The most values a gradient part may hold so that even their worst-case encoding, slack
    /// included, fits in ProtocolConfig.PartBytes: every frame and pooled buffer then does too.
    public static readonly int ValuesPerPart = ValuesWithin(ProtocolConfig.PartBytes);

    /// How many parts `count` values are cut into (<see cref="Payload.Part"/>), none above ValuesPerPart.
    public static int Parts(int count) => Math.Max(1, (int)(((long)count + ValuesPerPart - 1) / ValuesPerPart));

    static int Blocks(int count) => (int)(((long)count + BlockValues - 1) / BlockValues);

    static int ValuesWithin(int bytes)
    {
        int room = bytes - Slack, fullBlock = HeaderBytes + 8 * BlockValues;
        int blocks = room / fullBlock, rest = room % fullBlock;
        return blocks * BlockValues + (rest > HeaderBytes ? (rest - HeaderBytes) / 8 : 0);
    }

    /// The encoding of `values` in an array of exactly its length (for a message).
    public static byte[] Encode(ReadOnlySpan<long> values)
    {
        int length = 0;
        for (int i = 0; i < values.Length; i += BlockValues)
        {
            var block = values.Slice(i, Math.Min(BlockValues, values.Length - i));
            length += HeaderBytes + block.Length * Shape(block).Width;
        }
        var bytes = new byte[length];
        Encode(values, bytes);
        return bytes;
    }

    /// Encodes `values` into `destination` and returns the bytes it took. Whole 8-byte stores
    /// where 8 bytes of room remain (always, with MaxEncodedBytes), byte by byte near the end of a
    /// shorter destination; ArgumentException when it is too short for the encoding.
    public static int Encode(ReadOnlySpan<long> values, Span<byte> destination)
    {
        int pos = 0;
        for (int i = 0; i < values.Length; i += BlockValues)
        {
            var block = values.Slice(i, Math.Min(BlockValues, values.Length - i));
            var (w, s) = Shape(block);
            int bytes = block.Length * w;
            if (destination.Length - pos < HeaderBytes + bytes) throw TooShort(destination.Length, values.Length);
            destination[pos] = (byte)w;
            destination[pos + 1] = (byte)s;
            pos += HeaderBytes;
            if (w == 0) continue;
            if (destination.Length - pos >= bytes - w + 8) EncodeBlock(block, ref destination[pos], w, s);
            else EncodeTail(block, destination.Slice(pos, bytes), w, s);
            pos += bytes;
        }
        return pos;
    }

    // Apart from the loops, so that building the message does not crowd their registers.
    static ArgumentException TooShort(int length, int count) =>
        new($"a destination of {length} bytes is too short for the encoding of {count} values", "destination");

    /// One whole 8-byte store a value, w bytes apart: each value overwrites the bytes its
    /// predecessor's store wrote past its own.
    static void EncodeBlock(ReadOnlySpan<long> block, ref byte destination, int w, int s)
    {
        for (int k = 0; k < block.Length; k++)
        {
            ulong u = (ulong)(block[k] >> s);
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref destination, k * w), BitConverter.IsLittleEndian ? u : BinaryPrimitives.ReverseEndianness(u));
        }
    }

    static void EncodeTail(ReadOnlySpan<long> block, Span<byte> destination, int w, int s)
    {
        for (int k = 0; k < block.Length; k++)
            for (int b = 0; b < w; b++) destination[k * w + b] = (byte)((ulong)(block[k] >> s) >> (8 * b));
    }

    /// A block's width and shift, from two ORs over it: of the values (their common trailing
    /// zeros), and of each value xor its sign (its bits below the sign, whose highest set bit after
    /// the shift, plus the sign bit, is what a value needs).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (int Width, int Shift) Shape(ReadOnlySpan<long> block)
    {
        long any = 0, magnitude = 0;
        int i = 0;
        if (Vector256.IsHardwareAccelerated && block.Length == BlockValues)
        {
            ref long first = ref MemoryMarshal.GetReference(block);
            var v0 = Vector256.LoadUnsafe(ref first);
            var v1 = Vector256.LoadUnsafe(ref first, 4);
            var v2 = Vector256.LoadUnsafe(ref first, 8);
            var v3 = Vector256.LoadUnsafe(ref first, 12);
            var anyV = (v0 | v1) | (v2 | v3);
            var magnitudeV = (BelowSign(v0) | BelowSign(v1)) | (BelowSign(v2) | BelowSign(v3));
            var any2 = anyV.GetLower() | anyV.GetUpper();
            var magnitude2 = magnitudeV.GetLower() | magnitudeV.GetUpper();
            any = any2.ToScalar() | any2.GetElement(1);
            magnitude = magnitude2.ToScalar() | magnitude2.GetElement(1);
            i = BlockValues;
        }
        for (; i < block.Length; i++) { any |= block[i]; magnitude |= block[i] ^ (block[i] >> 63); }
        if (any == 0) return (0, 0);
        int shift = BitOperations.TrailingZeroCount(any);
        // magnitude >= 0, so (65 - leading zeros) bits hold every value with its sign: 1 to 8 bytes.
        return ((72 - BitOperations.LeadingZeroCount((ulong)magnitude >> shift)) / 8, shift);
    }

    static Vector256<long> BelowSign(Vector256<long> v) => v ^ Vector256.LessThan(v, Vector256<long>.Zero);

    /// Decodes exactly target.Length values from `encoded` and adds them to target (add) or
    /// stores them (copy). The whole payload is checked first, so a malformed one changes nothing:
    /// InvalidDataException, naming what was expected, for a width above 8, a shift above 63, a
    /// block cut short, or bytes left over (a payload of another count of values shows as one of those).
    public static void Decode(ReadOnlySpan<byte> encoded, Span<long> target, bool add)
    {
        Check(encoded, target.Length);
        long keep = add ? -1L : 0L;   // target = (target & keep) + value: an exact add, or a copy
        int pos = 0;
        for (int i = 0; i < target.Length; i += BlockValues)
        {
            var block = target.Slice(i, Math.Min(BlockValues, target.Length - i));
            int w = encoded[pos], s = encoded[pos + 1], bytes = block.Length * w;
            pos += HeaderBytes;
            if (w == 0)
            {
                if (!add) block.Clear();
                continue;
            }
            if (encoded.Length - pos >= bytes - w + 8) DecodeBlock(ref Unsafe.AsRef(in encoded[pos]), block, w, s, keep);
            else DecodeTail(encoded.Slice(pos, bytes), block, w, s, keep);
            pos += bytes;
        }
    }

    /// One unaligned 8-byte load a value, w bytes apart, four values a round (fewer instructions
    /// a value: measured 1.43 -> 1.30 ns on 5-byte values).
    static void DecodeBlock(ref byte source, Span<long> block, int w, int s, long keep)
    {
        int drop = 64 - 8 * w, k = 0;
        ref long t = ref MemoryMarshal.GetReference(block);
        for (; k + 4 <= block.Length; k += 4)
        {
            ref byte at = ref Unsafe.Add(ref source, k * w);
            ref long x = ref Unsafe.Add(ref t, k);
            x = (x & keep) + Value(Load(ref at), drop, s);
            Unsafe.Add(ref x, 1) = (Unsafe.Add(ref x, 1) & keep) + Value(Load(ref Unsafe.Add(ref at, w)), drop, s);
            Unsafe.Add(ref x, 2) = (Unsafe.Add(ref x, 2) & keep) + Value(Load(ref Unsafe.Add(ref at, 2 * w)), drop, s);
            Unsafe.Add(ref x, 3) = (Unsafe.Add(ref x, 3) & keep) + Value(Load(ref Unsafe.Add(ref at, 3 * w)), drop, s);
        }
        for (; k < block.Length; k++) block[k] = (block[k] & keep) + Value(Load(ref Unsafe.Add(ref source, k * w)), drop, s);
    }

    static void DecodeTail(ReadOnlySpan<byte> source, Span<long> block, int w, int s, long keep)
    {
        for (int k = 0; k < block.Length; k++)
        {
            ulong raw = 0;
            for (int b = 0; b < w; b++) raw |= (ulong)source[k * w + b] << (8 * b);
            block[k] = (block[k] & keep) + Value(raw, 64 - 8 * w, s);
        }
    }

    static ulong Load(ref byte at)
    {
        ulong raw = Unsafe.ReadUnaligned<ulong>(ref at);
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    /// A value from the little-endian bytes at the bottom of `raw`: its w bytes to the top (`drop`
    /// = 64 - 8w, so what lies past them falls off), back down with their sign, then the shift.
    static long Value(ulong raw, int drop, int s) => ((long)(raw << drop) >> drop) << s;

    /// Walks the block headers: Decode reads only what this has found in bounds.
    static void Check(ReadOnlySpan<byte> encoded, int count)
    {
        int pos = 0, blocks = Blocks(count);
        for (int b = 0; b < blocks; b++)
        {
            if (encoded.Length - pos < HeaderBytes) throw Malformed(encoded.Length, count, $"it ends at block {b + 1}'s header");
            int w = encoded[pos], s = encoded[pos + 1];
            if (w > 8) throw Malformed(encoded.Length, count, $"block {b + 1} has width {w}, expected 0 to 8 bytes");
            if (s > 63) throw Malformed(encoded.Length, count, $"block {b + 1} has shift {s}, expected 0 to 63 bits");
            int values = Math.Min(BlockValues, count - b * BlockValues);
            pos += HeaderBytes;
            if (encoded.Length - pos < values * w)
                throw Malformed(encoded.Length, count, $"block {b + 1} needs {values * w} bytes after its header, {encoded.Length - pos} are left");
            pos += values * w;
        }
        if (pos != encoded.Length) throw Malformed(encoded.Length, count, $"{encoded.Length - pos} bytes are left over after the last block");
    }

    static InvalidDataException Malformed(int length, int count, string problem) =>
        new($"a gradient payload of {length} bytes for {count} values ({Blocks(count)} blocks of up to {BlockValues}): {problem}");
}
