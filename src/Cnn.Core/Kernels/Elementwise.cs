using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DistTrain.Cnn.Kernels;

/// Element-wise loops shared by the layers, vectorised. Each output element is one operation on
/// its own inputs, so the results are those of the scalar loops, bit for bit.
public static class Elementwise
{
    /// dst[i] += src[i] for i in [0, length): the short rows of a convolution (a few to a few dozen floats).
    public static unsafe void AddInto(float* dst, float* src, int length)
    {
        int i = 0;
        for (; i + 8 <= length; i += 8) (Vector256.Load(dst + i) + Vector256.Load(src + i)).Store(dst + i);
        for (; i < length; i++) dst[i] += src[i];
    }

    /// dst[i] = src[i] for i in [0, length), for short rows: cheaper than a general memory copy
    /// below a few dozen floats. The two ranges must not overlap.
    public static unsafe void Copy(float* src, float* dst, int length)
    {
        if (length >= 8)
        {
            int i = 0;
            for (; i + 8 <= length; i += 8) Vector256.Load(src + i).Store(dst + i);
            // The last eight again, overlapping what was just written: a copy may write an element twice.
            if (i < length) Vector256.Load(src + length - 8).Store(dst + length - 8);
        }
        else
            for (int i = 0; i < length; i++) dst[i] = src[i];
    }

    /// dst[i] = src[i] + b
    public static void AddScalar(ReadOnlySpan<float> src, float b, Span<float> dst)
    {
        if (src.Length != dst.Length) throw new ArgumentException($"add: {src.Length} values for {dst.Length}");
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, Vector<float>>(dst);
            var s = MemoryMarshal.Cast<float, Vector<float>>(src);
            var bv = new Vector<float>(b);
            for (int v = 0; v < d.Length; v++) d[v] = s[v] + bv;
            i = d.Length * Vector<float>.Count;
        }
        for (; i < dst.Length; i++) dst[i] = src[i] + b;
    }

    /// The sum of x in the fixed order of <see cref="Gemm"/>'s dot product: eight lanes each add
    /// every eighth element, the lanes are added in a fixed tree, then the tail. The same bits on
    /// every machine with or without vectors.
    public static float Sum(ReadOnlySpan<float> x)
    {
        var lanes = Vector256<float>.Zero;
        int p = 0;
        for (; p + 8 <= x.Length; p += 8) lanes += Vector256.Create(x.Slice(p, 8));
        float r = LaneTree(lanes);
        for (; p < x.Length; p++) r += x[p];
        return r;
    }

    /// <see cref="Sum"/> taken in pieces: adds x (a multiple of 8 long) to the eight lanes
    /// lanes[0..8]; <see cref="SumOfLanes"/> with the tail of the last piece then gives Sum of the
    /// pieces' concatenation, bit for bit.
    public static void AddToLanes(ReadOnlySpan<float> x, Span<float> lanes)
    {
        if (x.Length % 8 != 0) throw new ArgumentException($"sum lanes: a piece of {x.Length} values, expected a multiple of 8");
        var l = Vector256.Create(lanes[..8]);
        for (int p = 0; p < x.Length; p += 8) l += Vector256.Create(x.Slice(p, 8));
        l.CopyTo(lanes);
    }

    public static float SumOfLanes(ReadOnlySpan<float> lanes, ReadOnlySpan<float> tail)
    {
        float r = LaneTree(Vector256.Create(lanes[..8]));
        foreach (float x in tail) r += x;
        return r;
    }

    static float LaneTree(Vector256<float> l) => ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
