using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DistTrain.Cnn.Kernels;

/// Single-precision matrix products on row-major spans. Every element of C is a chain of fused
/// multiply-adds in increasing k (NN) or a fixed-lane dot product (NT), so results are bitwise
/// reproducible whatever the thread count or blocking. <see cref="GemmReference"/> is the plain
/// version the tests hold these against.
public static unsafe class Gemm
{
    const int Lanes = 8;          // Vector256<float>.Count
    const int ColumnBlock = 256;  // columns per parallel task in NN (multiple of 2 * Lanes)

    /// C[m,n] = (accumulate ? C : 0) + A * B, where A[i,k] = a[i*aRowStride + k*aColStride]
    /// (so a transposed A costs nothing) and B is row-major k x n.
    public static void NN(ReadOnlyMemory<float> a, int aRowStride, int aColStride, ReadOnlyMemory<float> b,
                          Memory<float> c, int m, int n, int k, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        long work = (long)m * n * k;
        var job = t_nn ??= new NNJob();
        (job.A, job.Ars, job.Acs, job.B, job.C, job.M, job.N, job.K, job.Accumulate) = (a, aRowStride, aColStride, b, c, m, n, k, accumulate);
        // Wide products split by column blocks, narrow ones by groups of 4 rows.
        job.ByColumns = n >= 2 * ColumnBlock;
        Parallelism.For(job.ByColumns ? (n + ColumnBlock - 1) / ColumnBlock : (m + 3) / 4, work, job);
        (job.A, job.B, job.C) = (default, default, default);
    }

    [ThreadStatic] static NNJob? t_nn;
    [ThreadStatic] static NTJob? t_nt;

    sealed class NNJob : IBlockJob
    {
        public ReadOnlyMemory<float> A, B;
        public Memory<float> C;
        public int Ars, Acs, M, N, K;
        public bool Accumulate, ByColumns;

        public void Run(int blk)
        {
            if (ByColumns)
            {
                int j0 = blk * ColumnBlock, j1 = Math.Min(N, j0 + ColumnBlock);
                NNBlock(A.Span, Ars, Acs, B.Span, C.Span, 0, M, j0, j1, N, K, Accumulate);
            }
            else
            {
                int i0 = blk * 4, i1 = Math.Min(M, i0 + 4);
                NNBlock(A.Span, Ars, Acs, B.Span, C.Span, i0, i1, 0, N, N, K, Accumulate);
            }
        }
    }

    sealed class NTJob : IBlockJob
    {
        public ReadOnlyMemory<float> A, B;
        public Memory<float> C;
        public int M, N, K;
        public bool Accumulate;

        public void Run(int blk)
        {
            int i0 = blk * 2, i1 = Math.Min(M, i0 + 2);
            NTBlock(A.Span, B.Span, C.Span, i0, i1, N, K, Accumulate);
        }
    }

    /// Span form, single-threaded.
    public static void NN(ReadOnlySpan<float> a, int aRowStride, int aColStride, ReadOnlySpan<float> b,
                          Span<float> c, int m, int n, int k, bool accumulate)
        => NNBlock(a, aRowStride, aColStride, b, c, 0, m, 0, n, n, k, accumulate);

    static void NNBlock(ReadOnlySpan<float> aSpan, int ars, int acs, ReadOnlySpan<float> bSpan, Span<float> cSpan,
                        int i0, int i1, int j0, int j1, int n, int k, bool accumulate)
    {
        fixed (float* a = aSpan)
        fixed (float* b = bSpan)
        fixed (float* c = cSpan)
        {
            int i = i0;
            for (; i + 4 <= i1; i += 4) Rows4(a + i * ars, ars, acs, b, c + i * n, j0, j1, n, k, accumulate);
            for (; i < i1; i++) Row1(a + i * ars, acs, b, c + i * n, j0, j1, n, k, accumulate);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4(float* a, int ars, int acs, float* b, float* c, int j0, int j1, int n, int k, bool acc)
    {
        float* a0 = a, a1 = a + ars, a2 = a + 2 * ars, a3 = a + 3 * ars;
        float* c0 = c, c1 = c + n, c2 = c + 2 * n, c3 = c + 3 * n;
        int j = j0;
        // AVX-512: 4 rows x 32 columns per pass. Each element is still the same FMA chain in
        // increasing p, so the result is bitwise the one of the 256-bit path below.
        if (Vector512.IsHardwareAccelerated)
            for (; j + 4 * Lanes <= j1; j += 4 * Lanes)
            {
                Vector512<float> s00, s01, s10, s11, s20, s21, s30, s31;
                if (acc)
                {
                    s00 = Vector512.Load(c0 + j); s01 = Vector512.Load(c0 + j + 2 * Lanes);
                    s10 = Vector512.Load(c1 + j); s11 = Vector512.Load(c1 + j + 2 * Lanes);
                    s20 = Vector512.Load(c2 + j); s21 = Vector512.Load(c2 + j + 2 * Lanes);
                    s30 = Vector512.Load(c3 + j); s31 = Vector512.Load(c3 + j + 2 * Lanes);
                }
                else s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = Vector512<float>.Zero;
                float* bp = b + j;
                for (int p = 0; p < k; p++, bp += n)
                {
                    var b0 = Vector512.Load(bp);
                    var b1 = Vector512.Load(bp + 2 * Lanes);
                    int ap = p * acs;
                    var x = Vector512.Create(a0[ap]); s00 = Vector512.FusedMultiplyAdd(x, b0, s00); s01 = Vector512.FusedMultiplyAdd(x, b1, s01);
                    x = Vector512.Create(a1[ap]); s10 = Vector512.FusedMultiplyAdd(x, b0, s10); s11 = Vector512.FusedMultiplyAdd(x, b1, s11);
                    x = Vector512.Create(a2[ap]); s20 = Vector512.FusedMultiplyAdd(x, b0, s20); s21 = Vector512.FusedMultiplyAdd(x, b1, s21);
                    x = Vector512.Create(a3[ap]); s30 = Vector512.FusedMultiplyAdd(x, b0, s30); s31 = Vector512.FusedMultiplyAdd(x, b1, s31);
                }
                s00.Store(c0 + j); s01.Store(c0 + j + 2 * Lanes);
                s10.Store(c1 + j); s11.Store(c1 + j + 2 * Lanes);
                s20.Store(c2 + j); s21.Store(c2 + j + 2 * Lanes);
                s30.Store(c3 + j); s31.Store(c3 + j + 2 * Lanes);
            }
        for (; j + 2 * Lanes <= j1; j += 2 * Lanes)
        {
            Vector256<float> s00, s01, s10, s11, s20, s21, s30, s31;
            if (acc)
            {
                s00 = Vector256.Load(c0 + j); s01 = Vector256.Load(c0 + j + Lanes);
                s10 = Vector256.Load(c1 + j); s11 = Vector256.Load(c1 + j + Lanes);
                s20 = Vector256.Load(c2 + j); s21 = Vector256.Load(c2 + j + Lanes);
                s30 = Vector256.Load(c3 + j); s31 = Vector256.Load(c3 + j + Lanes);
            }
            else s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = Vector256<float>.Zero;
            float* bp = b + j;
            for (int p = 0; p < k; p++, bp += n)
            {
                var b0 = Vector256.Load(bp);
                var b1 = Vector256.Load(bp + Lanes);
                int ap = p * acs;
                var x = Vector256.Create(a0[ap]); s00 = Vector256.FusedMultiplyAdd(x, b0, s00); s01 = Vector256.FusedMultiplyAdd(x, b1, s01);
                x = Vector256.Create(a1[ap]); s10 = Vector256.FusedMultiplyAdd(x, b0, s10); s11 = Vector256.FusedMultiplyAdd(x, b1, s11);
                x = Vector256.Create(a2[ap]); s20 = Vector256.FusedMultiplyAdd(x, b0, s20); s21 = Vector256.FusedMultiplyAdd(x, b1, s21);
                x = Vector256.Create(a3[ap]); s30 = Vector256.FusedMultiplyAdd(x, b0, s30); s31 = Vector256.FusedMultiplyAdd(x, b1, s31);
            }
            s00.Store(c0 + j); s01.Store(c0 + j + Lanes);
            s10.Store(c1 + j); s11.Store(c1 + j + Lanes);
            s20.Store(c2 + j); s21.Store(c2 + j + Lanes);
            s30.Store(c3 + j); s31.Store(c3 + j + Lanes);
        }
        // Column tail: one row at a time keeps the per-element order identical to the main path.
        if (j < j1)
        {
            Row1(a0, acs, b, c0, j, j1, n, k, acc);
            Row1(a1, acs, b, c1, j, j1, n, k, acc);
            Row1(a2, acs, b, c2, j, j1, n, k, acc);
            Row1(a3, acs, b, c3, j, j1, n, k, acc);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row1(float* a, int acs, float* b, float* c, int j0, int j1, int n, int k, bool acc)
    {
        int j = j0;
        for (; j + Lanes <= j1; j += Lanes)
        {
            var s = acc ? Vector256.Load(c + j) : Vector256<float>.Zero;
            float* bp = b + j;
            for (int p = 0; p < k; p++, bp += n)
                s = Vector256.FusedMultiplyAdd(Vector256.Create(a[p * acs]), Vector256.Load(bp), s);
            s.Store(c + j);
        }
        for (; j < j1; j++)
        {
            float s = acc ? c[j] : 0f;
            float* bp = b + j;
            for (int p = 0; p < k; p++, bp += n) s = MathF.FusedMultiplyAdd(a[p * acs], *bp, s);
            c[j] = s;
        }
    }

    /// C[m,n] = (accumulate ? C : 0) + A * B^T with A row-major m x k and B row-major n x k:
    /// every element is a dot product of two contiguous rows.
    public static void NT(ReadOnlyMemory<float> a, ReadOnlyMemory<float> b, Memory<float> c, int m, int n, int k, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        long work = (long)m * n * k;
        var job = t_nt ??= new NTJob();
        (job.A, job.B, job.C, job.M, job.N, job.K, job.Accumulate) = (a, b, c, m, n, k, accumulate);
        Parallelism.For((m + 1) / 2, work, job);
        (job.A, job.B, job.C) = (default, default, default);
    }

    public static void NT(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, bool accumulate)
        => NTBlock(a, b, c, 0, m, n, k, accumulate);

    static void NTBlock(ReadOnlySpan<float> aSpan, ReadOnlySpan<float> bSpan, Span<float> cSpan, int i0, int i1, int n, int k, bool acc)
    {
        fixed (float* a = aSpan)
        fixed (float* b = bSpan)
        fixed (float* c = cSpan)
        {
            for (int i = i0; i < i1; i++)
            {
                float* ar = a + (long)i * k;
                float* cr = c + (long)i * n;
                int j = 0;
                for (; j + 4 <= n; j += 4) Dot4(ar, b + (long)j * k, k, cr + j, acc);
                for (; j < n; j++)
                {
                    float d = Dot(ar, b + (long)j * k, k);
                    cr[j] = acc ? cr[j] + d : d;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float HorizontalSum(Vector256<float> v) =>
        ((v.GetElement(0) + v.GetElement(4)) + (v.GetElement(2) + v.GetElement(6)))
        + ((v.GetElement(1) + v.GetElement(5)) + (v.GetElement(3) + v.GetElement(7)));

    /// The one definition of a dot product used everywhere (lane-wise FMA, fixed horizontal sum, scalar tail).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(float* x, float* y, int k)
    {
        var s = Vector256<float>.Zero;
        int p = 0;
        for (; p + Lanes <= k; p += Lanes) s = Vector256.FusedMultiplyAdd(Vector256.Load(x + p), Vector256.Load(y + p), s);
        float r = HorizontalSum(s);
        for (; p < k; p++) r = MathF.FusedMultiplyAdd(x[p], y[p], r);
        return r;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4(float* x, float* y, int k, float* c, bool acc)
    {
        float* y1 = y + k, y2 = y + 2 * k, y3 = y + 3 * k;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int p = 0;
        for (; p + Lanes <= k; p += Lanes)
        {
            var xv = Vector256.Load(x + p);
            s0 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y + p), s0);
            s1 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y1 + p), s1);
            s2 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y2 + p), s2);
            s3 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y3 + p), s3);
        }
        float r0 = HorizontalSum(s0), r1 = HorizontalSum(s1), r2 = HorizontalSum(s2), r3 = HorizontalSum(s3);
        for (; p < k; p++)
        {
            float xp = x[p];
            r0 = MathF.FusedMultiplyAdd(xp, y[p], r0);
            r1 = MathF.FusedMultiplyAdd(xp, y1[p], r1);
            r2 = MathF.FusedMultiplyAdd(xp, y2[p], r2);
            r3 = MathF.FusedMultiplyAdd(xp, y3[p], r3);
        }
        if (acc) { c[0] += r0; c[1] += r1; c[2] += r2; c[3] += r3; }
        else { c[0] = r0; c[1] = r1; c[2] = r2; c[3] = r3; }
    }
}

/// Plain triple loops in double precision: the reference the fast kernels are tested against.
public static class GemmReference
{
    public static void NN(ReadOnlySpan<float> a, int aRowStride, int aColStride, ReadOnlySpan<float> b,
                          Span<float> c, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = accumulate ? c[i * n + j] : 0;
                for (int p = 0; p < k; p++) s += (double)a[i * aRowStride + p * aColStride] * b[p * n + j];
                c[i * n + j] = (float)s;
            }
    }

    public static void NT(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[i * k + p] * b[j * k + p];
                c[i * n + j] = accumulate ? c[i * n + j] + (float)s : (float)s;
            }
    }
}
