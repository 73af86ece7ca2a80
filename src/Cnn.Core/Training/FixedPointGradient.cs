using System.Runtime.Intrinsics;

namespace DistTrain.Cnn.Training;

/// Order-independent exact summation of gradients (DESIGN.md invariant 3). Each micro-batch
/// gradient is rounded once to a multiple of 2^-40 and added as a 64-bit integer; integer
/// addition is associative, so the sum is bitwise the same whoever computed which micro-batch
/// and in whatever order the parts arrive. Range: |sum| < 2^23 per element, resolution 9.1e-13.
/// The loops run 16 elements at a time where the CPU has 512-bit vectors; every element goes
/// through the same IEEE operations as in the scalar loop (widen, scale by a power of two, round
/// to nearest even, convert), so the bits are the same with or without vectors.
public static unsafe class FixedPointGradient
{
    public const int FractionBits = 40;
    const double Scale = 1L << FractionBits;
    const double InverseScale = 1.0 / Scale;
    // |value| * 2^40 must stay below 2^62 so that adding a few thousand parts cannot overflow.
    const double MaxMagnitude = (double)(1L << 22);
    // Without AVX-512 there is no vector conversion between double and int64. Doubles in [2^12, 2^13)
    // are exactly 2^-40 apart, so for |v| < 2^11, v + 1.5 * 2^12 rounds v to a multiple of 2^-40
    // (ties to even: the add's own rounding), and its bits minus those of 1.5 * 2^12 count those
    // multiples: round(v * 2^40) without a multiply. And back: an integer below 2^51 in magnitude
    // added to those bits is the double 1.5 * 2^12 + x * 2^-40, exactly. Larger values (|gradient|
    // >= 2^11, or sums of them) take the scalar loop, so every element gets the scalar loop's bits.
    const float Limit = 1 << 11;
    const double Magic = 1.5 * (1 << 12);
    static readonly long MagicBits = BitConverter.DoubleToInt64Bits(Magic);

    /// sums[i] += round(values[i] * 2^40). Returns false (and leaves sums unusable) when a value is
    /// NaN, infinite or too large, which the caller treats as divergence.
    public static bool Accumulate(ReadOnlySpan<float> values, Span<long> sums)
    {
        if (values.Length != sums.Length) throw new ArgumentException($"fixed-point: {values.Length} values for {sums.Length} sums");
        fixed (float* v = values)
        fixed (long* s = sums)
            return Round(v, s, values.Length, fresh: false, clear: false);
    }

    /// A micro-batch's gradient taken into the sum: sums[i] = round(values[i] * 2^40) when `fresh`
    /// (the first part of a sum), else sums[i] += it; and values[i] = 0, so the gradient vector is
    /// clear for the next micro-batch without a pass of its own, nor one to clear the sums. Returns
    /// false as <see cref="Accumulate"/> does, leaving both unusable.
    public static bool Take(Span<float> values, Span<long> sums, bool fresh)
    {
        if (values.Length != sums.Length) throw new ArgumentException($"fixed-point: {values.Length} values for {sums.Length} sums");
        fixed (float* v = values)
        fixed (long* s = sums)
            return Round(v, s, values.Length, fresh, clear: true);
    }

    static bool Round(float* v, long* s, int length, bool fresh, bool clear)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var scale = Vector512.Create(Scale);
            var max = Vector512.Create(MaxMagnitude);
            for (; i + 16 <= length; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(v + i));
                // NaN fails the comparison too.
                if (!Vector512.LessThanAll(Vector512.Abs(lo), max) || !Vector512.LessThanAll(Vector512.Abs(hi), max)) return false;
                var sumLo = fresh ? Vector512<long>.Zero : Vector512.Load(s + i);
                var sumHi = fresh ? Vector512<long>.Zero : Vector512.Load(s + i + 8);
                (sumLo + Vector512.ConvertToInt64(Vector512.Round(lo * scale))).Store(s + i);
                (sumHi + Vector512.ConvertToInt64(Vector512.Round(hi * scale))).Store(s + i + 8);
                if (clear) Vector512<float>.Zero.Store(v + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> limit = Vector256.Create(Limit);
            Vector256<double> magic = Vector256.Create(Magic);
            var magicBits = Vector256.Create(MagicBits);
            for (; i + 8 <= length; i += 8)
            {
                var value = Vector256.Load(v + i);
                // NaN fails the comparison too, and goes to the scalar loop, which refuses it.
                if (Vector256.LessThanAll(Vector256.Abs(value), limit))
                {
                    var (lo, hi) = Vector256.Widen(value);
                    var sumLo = fresh ? Vector256<long>.Zero : Vector256.Load(s + i);
                    var sumHi = fresh ? Vector256<long>.Zero : Vector256.Load(s + i + 4);
                    (sumLo + ((lo + magic).AsInt64() - magicBits)).Store(s + i);
                    (sumHi + ((hi + magic).AsInt64() - magicBits)).Store(s + i + 4);
                    if (clear) Vector256<float>.Zero.Store(v + i);
                }
                else if (!RoundScalar(v + i, s + i, 8, fresh, clear)) return false;
            }
        }
        return RoundScalar(v + i, s + i, length - i, fresh, clear);
    }

    static bool RoundScalar(float* values, long* sums, int length, bool fresh, bool clear)
    {
        for (int i = 0; i < length; i++)
        {
            double v = values[i];
            if (!(Math.Abs(v) < MaxMagnitude)) return false;
            sums[i] = (fresh ? 0 : sums[i]) + (long)Math.Round(v * Scale, MidpointRounding.ToEven);
            if (clear) values[i] = 0f;
        }
        return true;
    }

    /// dst[i] = sums[i] * 2^-40 rounded to float: the same bits on every replica.
    public static void ToFloat(ReadOnlySpan<long> sums, Span<float> dst)
    {
        if (dst.Length != sums.Length) throw new ArgumentException($"fixed-point: {sums.Length} sums for {dst.Length} values");
        int i = 0;
        if (!Vector512.IsHardwareAccelerated && Vector256.IsHardwareAccelerated)
            fixed (long* s = sums)
            fixed (float* d = dst)
            {
                Vector256<double> magic = Vector256.Create(Magic);
                Vector256<long> magicBits = Vector256.Create(MagicBits), above = Vector256.Create(-(1L << 51)), below = Vector256.Create(1L << 51);
                for (; i + 8 <= sums.Length; i += 8)
                {
                    Vector256<long> a = Vector256.Load(s + i), b = Vector256.Load(s + i + 4);
                    if (Vector256.GreaterThanAll(a, above) && Vector256.LessThanAll(a, below) && Vector256.GreaterThanAll(b, above) && Vector256.LessThanAll(b, below))
                        Vector256.Narrow((a + magicBits).AsDouble() - magic, (b + magicBits).AsDouble() - magic).Store(d + i);
                    else
                        for (int j = i; j < i + 8; j++) dst[j] = (float)(sums[j] * InverseScale);
                }
            }
        if (Vector512.IsHardwareAccelerated)
            fixed (long* s = sums)
            fixed (float* d = dst)
            {
                var inverse = Vector512.Create(InverseScale);
                for (; i + 16 <= sums.Length; i += 16)
                    Vector512.Narrow(Vector512.ConvertToDouble(Vector512.Load(s + i)) * inverse,
                                     Vector512.ConvertToDouble(Vector512.Load(s + i + 8)) * inverse).Store(d + i);
            }
        for (; i < sums.Length; i++) dst[i] = (float)(sums[i] * InverseScale);
    }

    /// a[i] += b[i]: the reduction step of the all-reduce.
    public static void Add(Span<long> a, ReadOnlySpan<long> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"fixed-point: adding {b.Length} sums to {a.Length}");
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            fixed (long* x = a)
            fixed (long* y = b)
                for (; i + 8 <= a.Length; i += 8) (Vector512.Load(x + i) + Vector512.Load(y + i)).Store(x + i);
        else if (Vector256.IsHardwareAccelerated)
            fixed (long* x = a)
            fixed (long* y = b)
                for (; i + 4 <= a.Length; i += 4) (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
        for (; i < a.Length; i++) a[i] += b[i];
    }
}
