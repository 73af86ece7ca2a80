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
        var lanes = System.Runtime.Intrinsics.Vector256<float>.Zero;
        int p = 0;
        for (; p + 8 <= x.Length; p += 8) lanes += System.Runtime.Intrinsics.Vector256.Create(x.Slice(p, 8));
        float r = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
        for (; p < x.Length; p++) r += x[p];
        return r;
    }
}
