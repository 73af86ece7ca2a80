namespace DistTrain.Cnn.Training;

/// Order-independent exact summation of gradients (DESIGN.md invariant 3). Each micro-batch
/// gradient is rounded once to a multiple of 2^-40 and added as a 64-bit integer; integer
/// addition is associative, so the sum is bitwise the same whoever computed which micro-batch
/// and in whatever order the parts arrive. Range: |sum| < 2^23 per element, resolution 9.1e-13.
public static class FixedPointGradient
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
        for (int i = 0; i < values.Length; i++)
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
        for (int i = 0; i < sums.Length; i++) dst[i] = (float)(sums[i] * InverseScale);
    }

    /// a[i] += b[i]: the reduction step of the all-reduce.
    public static void Add(Span<long> a, ReadOnlySpan<long> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"fixed-point: adding {b.Length} sums to {a.Length}");
        for (int i = 0; i < a.Length; i++) a[i] += b[i];
    }
}
