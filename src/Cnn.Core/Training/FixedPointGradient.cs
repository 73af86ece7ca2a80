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

    /// sums[i] += round(values[i] * 2^40). Returns false (and leaves sums unusable) when a value is
    /// NaN, infinite or too large, which the caller treats as divergence.
    public static bool Accumulate(ReadOnlySpan<float> values, Span<long> sums)
    {
        if (values.Length != sums.Length) throw new ArgumentException($"fixed-point: {values.Length} values for {sums.Length} sums");
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            fixed (float* v = values)
            fixed (long* s = sums)
            {
                var scale = Vector512.Create(Scale);
                var max = Vector512.Create(MaxMagnitude);
                for (; i + 16 <= values.Length; i += 16)
                {
                    var (lo, hi) = Vector512.Widen(Vector512.Load(v + i));
                    // NaN fails the comparison too.
                    if (!Vector512.LessThanAll(Vector512.Abs(lo), max) || !Vector512.LessThanAll(Vector512.Abs(hi), max)) return false;
                    (Vector512.Load(s + i) + Vector512.ConvertToInt64(Vector512.Round(lo * scale))).Store(s + i);
                    (Vector512.Load(s + i + 8) + Vector512.ConvertToInt64(Vector512.Round(hi * scale))).Store(s + i + 8);
                }
            }
        for (; i < values.Length; i++)
        {
            double v = values[i];
            if (!(Math.Abs(v) < MaxMagnitude)) return false;
            sums[i] += (long)Math.Round(v * Scale, MidpointRounding.ToEven);
        }
        return true;
    }

    /// dst[i] = sums[i] * 2^-40 rounded to float: the same bits on every replica.
    public static void ToFloat(ReadOnlySpan<long> sums, Span<float> dst)
    {
        if (dst.Length != sums.Length) throw new ArgumentException($"fixed-point: {sums.Length} sums for {dst.Length} values");
        int i = 0;
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
        for (; i < a.Length; i++) a[i] += b[i];
    }
}
