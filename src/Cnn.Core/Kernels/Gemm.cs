using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DistTrain.Cnn.Kernels;

/// Single-precision matrix products on row-major spans. Every element of C is a chain of fused
/// multiply-adds in increasing k (NN) or a fixed-lane dot product (NT), so results are bitwise
/// reproducible whatever the thread count, blocking or vector width. <see cref="GemmReference"/> is
/// the plain version the tests hold these against.
///
/// NN computes register tiles two vectors wide (8 rows x 32 columns with 512-bit vectors, 6 x 16
/// with 256-bit, 6 x 8 with 128-bit: one generic tile, <see cref="IVectorOps{TVec}"/>); when
/// several tiles share a panel of B, the panel is first copied to a contiguous buffer so that the
/// tiles stream it from L1 instead of striding through B. NT computes 4 rows of A against 8 rows
/// of B at once (two dot products' 8 lanes per 512-bit register, or 4 x 3 dot products in 256-bit
/// registers), and walks k in chunks so both operands stay in cache; the lanes, their order and
/// the horizontal sum are those of <see cref="Dot"/>.
public static unsafe class Gemm
{
    const int Lanes = 8;          // Vector256<float>.Count: the lanes of a dot product
    const int ColumnBlock = 256;  // columns per parallel task in NN (a multiple of every panel width)
    const int NTRows = 4, NTCols = 8, NTChunk = 1024;
    /// Rows of an NN tile on this CPU (the widest vectors it runs): the unit of NN's row blocks.
    static readonly int TileRows = Vector512.IsHardwareAccelerated ? RowsFor<V512, Vector512<float>, Wide512>()
        : Vector256.IsHardwareAccelerated ? RowsFor<V256, Vector256<float>, Wide256>() : RowsFor<V128, Vector128<float>, Wide256>();

    /// C[m,n] = (accumulate ? C : 0) + A * B, where A[i,k] = a[i*aRowStride + k*aColStride]
    /// (so a transposed A costs nothing) and B is row-major k x n.
    public static void NN(ReadOnlyMemory<float> a, int aRowStride, int aColStride, ReadOnlyMemory<float> b,
                          Memory<float> c, int m, int n, int k, bool accumulate)
    {
        if (m == 0 || n == 0) return;
        long work = (long)m * n * k;
        var job = t_nn ??= new NNJob();
        (job.A, job.Ars, job.Acs, job.B, job.C, job.M, job.N, job.K, job.Accumulate) = (a, aRowStride, aColStride, b, c, m, n, k, accumulate);
        // Wide products split by column blocks, narrow ones by tiles of rows.
        job.ByColumns = n >= 2 * ColumnBlock;
        Parallelism.For(job.ByColumns ? (n + ColumnBlock - 1) / ColumnBlock : (m + TileRows - 1) / TileRows, work, job);
        (job.A, job.B, job.C) = (default, default, default);
    }

    /// C[m,n] = A * B with B a convolution's column matrix read in place (k patch rows, n output
    /// positions, a multiple of 8): every panel of B is packed straight from the input, and the tiles
    /// are NN's, so each element gets NN's chain over the unfolded columns.
    public static void NN(ReadOnlyMemory<float> a, int aRowStride, int aColStride, ConvColumns b, Memory<float> c, int m, int n, int k)
    {
        if (n % Lanes != 0) throw new ArgumentException($"NN over columns: {n} positions, expected a multiple of {Lanes}");
        if (b.Rows.Length < k || b.Chunks.Length < n / Lanes) throw new ArgumentException($"NN over columns: columns of {b.Rows.Length} rows and {b.Chunks.Length * Lanes} positions for {k} x {n}");
        if (m == 0 || n == 0) return;
        var job = t_nnColumns ??= new NNColumnsJob();
        (job.A, job.Ars, job.Acs, job.B, job.C, job.M, job.N, job.K) = (a, aRowStride, aColStride, b, c, m, n, k);
        Parallelism.For((n + ColumnBlock - 1) / ColumnBlock, (long)m * n * k, job);
        (job.A, job.B, job.C) = (default, default, default);
    }

    [ThreadStatic] static NNColumnsJob? t_nnColumns;

    sealed class NNColumnsJob : IBlockJob
    {
        public ReadOnlyMemory<float> A;
        public ConvColumns B;
        public Memory<float> C;
        public int Ars, Acs, M, N, K;

        public void Run(int blk)
        {
            int j = blk * ColumnBlock, j1 = Math.Min(N, j + ColumnBlock);
            fixed (float* a = A.Span)
            fixed (float* source = B.Source.Span)
            fixed (int* rows = B.Rows)
            fixed (int* chunks = B.Chunks)
            fixed (float* c = C.Span)
            {
                var b = new ColumnRows(source, rows, chunks);
                // The widest panels first, then narrower ones down to 8 columns, which n is a multiple of.
                if (Vector512.IsHardwareAccelerated)
                {
                    j = PackedPanels<V512, Vector512<float>, Wide512>(a, Ars, Acs, b, c, M, j, j1, N, K);
                    j = PackedPanels<V512, Vector512<float>, R2>(a, Ars, Acs, b, c, M, j, j1, N, K);
                    j = PackedPanels<V512, Vector512<float>, R1>(a, Ars, Acs, b, c, M, j, j1, N, K);
                    j = PackedPanels<V256, Vector256<float>, R1>(a, Ars, Acs, b, c, M, j, j1, N, K);
                }
                else if (Vector256.IsHardwareAccelerated)
                {
                    j = PackedPanels<V256, Vector256<float>, Wide256>(a, Ars, Acs, b, c, M, j, j1, N, K);
                    j = PackedPanels<V256, Vector256<float>, R1>(a, Ars, Acs, b, c, M, j, j1, N, K);
                }
                else j = PackedPanels<V128, Vector128<float>, Wide256>(a, Ars, Acs, b, c, M, j, j1, N, K);
                if (j != j1) throw new InvalidOperationException($"NN over columns: columns {j}..{j1} left");
            }
        }
    }

    /// The whole panels (TW vectors wide) of columns j0..j1 of B read through `b`, each packed from its
    /// runs of 8 columns and then run through every row of A in tiles; returns where the panels end.
    static int PackedPanels<TV, TVec, TW>(float* a, int ars, int acs, ColumnRows b, float* c, int m, int j0, int j1, int n, int k)
        where TV : struct, IVectorOps<TVec> where TVec : struct where TW : struct, ICount
    {
        int width = TW.Count * TV.Count;
        int jEnd = j0 + (j1 - j0) / width * width;
        if (jEnd == j0) return j0;
        float[] panel = Scratch(ref t_panel, k * width);
        fixed (float* packed = panel)
            for (int j = j0; j < jEnd; j += width)
            {
                for (int p = 0; p < k; p++)
                {
                    float* row = b.Row(p), dst = packed + p * width;
                    for (int q = 0; q < width; q += Lanes) Vector256.Load(row + b.Offset(j + q)).Store(dst + q);
                }
                TileColumn<TV, TVec, TW>(a, ars, acs, packed, width, c + j, n, 0, m, k, acc: false);
            }
        return jEnd;
    }

    [ThreadStatic] static NNJob? t_nn;
    [ThreadStatic] static NTJob? t_nt;
    [ThreadStatic] static float[]? t_panel;      // a packed K x 32 panel of B, per thread
    [ThreadStatic] static float[]? t_lanes;      // NT's partial lane sums between k chunks, per thread

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
                int i0 = blk * TileRows, i1 = Math.Min(M, i0 + TileRows);
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
            int j0 = blk * NTCols, j1 = Math.Min(N, j0 + NTCols);
            NTBlock(A.Span, B.Span, C.Span, M, j0, j1, N, K, Accumulate);
        }
    }

    static void NNBlock(ReadOnlySpan<float> aSpan, int ars, int acs, ReadOnlySpan<float> bSpan, Span<float> cSpan,
                        int i0, int i1, int j0, int j1, int n, int k, bool accumulate)
    {
        fixed (float* a = aSpan)
        fixed (float* b = bSpan)
        fixed (float* c = cSpan)
        {
            int jEnd = j0;
            // Wide panels first (fewer broadcasts of A per multiply-add), then panels of 2 vectors.
            if (Vector512.IsHardwareAccelerated) jEnd = Panels<V512, Vector512<float>, Wide512>(a, ars, acs, b, c, i0, i1, j0, j1, n, k, accumulate);
            else if (Vector256.IsHardwareAccelerated) jEnd = Panels<V256, Vector256<float>, Wide256>(a, ars, acs, b, c, i0, i1, j0, j1, n, k, accumulate);
            else if (Vector128.IsHardwareAccelerated) jEnd = Panels<V128, Vector128<float>, Wide256>(a, ars, acs, b, c, i0, i1, j0, j1, n, k, accumulate);
            if (Vector512.IsHardwareAccelerated) jEnd = Panels<V512, Vector512<float>, R2>(a, ars, acs, b, c, i0, i1, jEnd, j1, n, k, accumulate);
            else if (Vector256.IsHardwareAccelerated) jEnd = Panels<V256, Vector256<float>, R2>(a, ars, acs, b, c, i0, i1, jEnd, j1, n, k, accumulate);
            else if (Vector128.IsHardwareAccelerated) jEnd = Panels<V128, Vector128<float>, R2>(a, ars, acs, b, c, i0, i1, jEnd, j1, n, k, accumulate);
            // Columns left over (and every column without vectors): one row at a time, the same chain per element.
            if (jEnd < j1)
                for (int i = i0; i < i1; i++) Row1(a + (long)i * ars, acs, b, c + (long)i * n, jEnd, j1, n, k, accumulate);
        }
    }

    /// Rows i0..i1 of the whole panels (TW vectors wide) of columns j0..j1, in register tiles;
    /// returns where the panels end. A panel of B is packed when two or more row tiles read it and each
    /// read is long (k >= 32): then the copy pays for itself (mnist-cnn's dense input gradient, 16 rows
    /// over B's rows 36 KB apart: 1.04 -> 0.73-0.77 ms). Otherwise tiles read B in place, a row of tiles at a time.
    static int Panels<TV, TVec, TW>(float* a, int ars, int acs, float* b, float* c, int i0, int i1, int j0, int j1, int n, int k, bool acc)
        where TV : struct, IVectorOps<TVec> where TVec : struct where TW : struct, ICount
    {
        int width = TW.Count * TV.Count, tileRows = RowsFor<TV, TVec, TW>();
        int jEnd = j0 + (j1 - j0) / width * width;
        if (i1 - i0 >= 2 * tileRows && k >= 32)
        {
            float[] panel = Scratch(ref t_panel, k * width);
            fixed (float* packed = panel)
                for (int j = j0; j < jEnd; j += width)
                {
                    for (int p = 0; p < k; p++)
                        for (int v = 0; v < TW.Count; v++)
                            TV.Store(TV.Load(b + (long)p * n + j + v * TV.Count), packed + p * width + v * TV.Count);
                    TileColumn<TV, TVec, TW>(a, ars, acs, packed, width, c + j, n, i0, i1, k, acc);
                }
        }
        else
            for (int i = i0; i < i1; i += tileRows)
                for (int j = j0; j < jEnd; j += width)
                    TileColumn<TV, TVec, TW>(a, ars, acs, b + j, n, c + j, n, i, Math.Min(i1, i + tileRows), k, acc);
        return jEnd;
    }

    /// Rows i0..i1 of one panel: full tiles, then one tile of the rows left.
    static void TileColumn<TV, TVec, TW>(float* a, int ars, int acs, float* b, int bStride, float* c, int ldc, int i0, int i1, int k, bool acc)
        where TV : struct, IVectorOps<TVec> where TVec : struct where TW : struct, ICount
    {
        int i = i0, tileRows = RowsFor<TV, TVec, TW>();
        for (; i + tileRows <= i1; i += tileRows)
            switch (tileRows)
            {
                case 8: Tile<TV, TVec, R8, TW>(a + (long)i * ars, ars, acs, b, bStride, c + (long)i * ldc, ldc, k, acc); break;
                case 6: Tile<TV, TVec, R6, TW>(a + (long)i * ars, ars, acs, b, bStride, c + (long)i * ldc, ldc, k, acc); break;
                case 4: Tile<TV, TVec, R4, TW>(a + (long)i * ars, ars, acs, b, bStride, c + (long)i * ldc, ldc, k, acc); break;
                default: throw new InvalidOperationException($"no tile of {tileRows} rows");
            }
        float* ai = a + (long)i * ars, ci = c + (long)i * ldc;
        switch (i1 - i)
        {
            case 1: Tile<TV, TVec, R1, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
            case 2: Tile<TV, TVec, R2, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
            case 3: Tile<TV, TVec, R3, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
            case 4: Tile<TV, TVec, R4, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
            case 5: Tile<TV, TVec, R5, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
            case 6: Tile<TV, TVec, R6, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
            case 7: Tile<TV, TVec, R7, TW>(ai, ars, acs, b, bStride, ci, ldc, k, acc); break;
        }
    }

    static float[] Scratch(ref float[]? buffer, int length)
    {
        if (buffer is null || buffer.Length < length) buffer = new float[Math.Max(length, 4096)];
        return buffer;
    }

    /// A tile's rows or its vectors per row, as a type so that the JIT compiles one tile kernel per
    /// shape with the unused accumulators removed.
    interface ICount { static abstract int Count { get; } }
    struct R1 : ICount { public static int Count => 1; }
    struct R2 : ICount { public static int Count => 2; }
    struct R3 : ICount { public static int Count => 3; }
    struct R4 : ICount { public static int Count => 4; }
    struct R5 : ICount { public static int Count => 5; }
    struct R6 : ICount { public static int Count => 6; }
    struct R7 : ICount { public static int Count => 7; }
    struct R8 : ICount { public static int Count => 8; }
    /// Vectors per row of the wide NN tiles: 4 with 32 registers (6 x 4 accumulators: one broadcast of A
    /// per 4 multiply-adds; conv2 of mnist-cnn 70 -> 78-83 GFLOP/s), 2 with 16 (6 x 2; 4 x 3 measured no better).
    struct Wide512 : ICount { public static int Count => 4; }
    struct Wide256 : ICount { public static int Count => 2; }

    /// Rows of a tile W vectors wide: as many accumulators as the registers hold beside the W
    /// vectors of B and the broadcast A value, at most 8.
    static int RowsFor<TV, TVec, TW>() where TV : struct, IVectorOps<TVec> where TVec : struct where TW : struct, ICount =>
        Math.Min(8, (TV.Registers - TW.Count - 1) / TW.Count);

    /// C[0..R, 0..W*w] (row stride ldc) = (acc ? C : 0) + A[0..R, 0..k] * B[0..k, 0..W*w] for W vectors
    /// of w lanes per row, B's rows bStride apart. Each element is the chain c = fma(a[i,p], b[p,j], c)
    /// for p = 0..k-1, whatever the vector width or tile shape: they only decide how many run side by side.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile<TV, TVec, TR, TW>(float* a, int ars, int acs, float* b, int bStride, float* c, int ldc, int k, bool acc)
        where TV : struct, IVectorOps<TVec> where TVec : struct where TR : struct, ICount where TW : struct, ICount
    {
        int r = TR.Count, v = TW.Count, w = TV.Count;
        TVec s00 = default, s01 = default, s02 = default, s03 = default;
        TVec s10 = default, s11 = default, s12 = default, s13 = default;
        TVec s20 = default, s21 = default, s22 = default, s23 = default;
        TVec s30 = default, s31 = default, s32 = default, s33 = default;
        TVec s40 = default, s41 = default, s42 = default, s43 = default;
        TVec s50 = default, s51 = default, s52 = default, s53 = default;
        TVec s60 = default, s61 = default, s62 = default, s63 = default;
        TVec s70 = default, s71 = default, s72 = default, s73 = default;
        if (acc)
        {
            { s00 = TV.Load(c + 0 * ldc + 0 * w); if (v > 1) s01 = TV.Load(c + 0 * ldc + 1 * w); if (v > 2) s02 = TV.Load(c + 0 * ldc + 2 * w); if (v > 3) s03 = TV.Load(c + 0 * ldc + 3 * w); }
            if (r > 1) { s10 = TV.Load(c + 1 * ldc + 0 * w); if (v > 1) s11 = TV.Load(c + 1 * ldc + 1 * w); if (v > 2) s12 = TV.Load(c + 1 * ldc + 2 * w); if (v > 3) s13 = TV.Load(c + 1 * ldc + 3 * w); }
            if (r > 2) { s20 = TV.Load(c + 2 * ldc + 0 * w); if (v > 1) s21 = TV.Load(c + 2 * ldc + 1 * w); if (v > 2) s22 = TV.Load(c + 2 * ldc + 2 * w); if (v > 3) s23 = TV.Load(c + 2 * ldc + 3 * w); }
            if (r > 3) { s30 = TV.Load(c + 3 * ldc + 0 * w); if (v > 1) s31 = TV.Load(c + 3 * ldc + 1 * w); if (v > 2) s32 = TV.Load(c + 3 * ldc + 2 * w); if (v > 3) s33 = TV.Load(c + 3 * ldc + 3 * w); }
            if (r > 4) { s40 = TV.Load(c + 4 * ldc + 0 * w); if (v > 1) s41 = TV.Load(c + 4 * ldc + 1 * w); if (v > 2) s42 = TV.Load(c + 4 * ldc + 2 * w); if (v > 3) s43 = TV.Load(c + 4 * ldc + 3 * w); }
            if (r > 5) { s50 = TV.Load(c + 5 * ldc + 0 * w); if (v > 1) s51 = TV.Load(c + 5 * ldc + 1 * w); if (v > 2) s52 = TV.Load(c + 5 * ldc + 2 * w); if (v > 3) s53 = TV.Load(c + 5 * ldc + 3 * w); }
            if (r > 6) { s60 = TV.Load(c + 6 * ldc + 0 * w); if (v > 1) s61 = TV.Load(c + 6 * ldc + 1 * w); if (v > 2) s62 = TV.Load(c + 6 * ldc + 2 * w); if (v > 3) s63 = TV.Load(c + 6 * ldc + 3 * w); }
            if (r > 7) { s70 = TV.Load(c + 7 * ldc + 0 * w); if (v > 1) s71 = TV.Load(c + 7 * ldc + 1 * w); if (v > 2) s72 = TV.Load(c + 7 * ldc + 2 * w); if (v > 3) s73 = TV.Load(c + 7 * ldc + 3 * w); }
        }
        // Row offsets and strides as native integers computed once: with int strides the JIT
        // multiplied and sign-extended them again in every iteration (10 integer instructions per
        // 12 multiply-adds in the 256-bit 6 x 16 tile's listing).
        nint o1 = ars, o2 = 2 * (nint)ars, o3 = 3 * (nint)ars, o4 = 4 * (nint)ars, o5 = 5 * (nint)ars, o6 = 6 * (nint)ars, o7 = 7 * (nint)ars;
        nint bStep = bStride, aStep = acs;
        float* ap = a;
        for (int p = 0; p < k; p++, b += bStep, ap += aStep)
        {
            var b0 = TV.Load(b);
            var b1 = v > 1 ? TV.Load(b + 1 * w) : default;
            var b2 = v > 2 ? TV.Load(b + 2 * w) : default;
            var b3 = v > 3 ? TV.Load(b + 3 * w) : default;
            TVec x;
            { x = TV.Broadcast(ap[0 * ars]); s00 = TV.Fma(x, b0, s00); if (v > 1) s01 = TV.Fma(x, b1, s01); if (v > 2) s02 = TV.Fma(x, b2, s02); if (v > 3) s03 = TV.Fma(x, b3, s03); }
            if (r > 1) { x = TV.Broadcast(ap[o1]); s10 = TV.Fma(x, b0, s10); if (v > 1) s11 = TV.Fma(x, b1, s11); if (v > 2) s12 = TV.Fma(x, b2, s12); if (v > 3) s13 = TV.Fma(x, b3, s13); }
            if (r > 2) { x = TV.Broadcast(ap[o2]); s20 = TV.Fma(x, b0, s20); if (v > 1) s21 = TV.Fma(x, b1, s21); if (v > 2) s22 = TV.Fma(x, b2, s22); if (v > 3) s23 = TV.Fma(x, b3, s23); }
            if (r > 3) { x = TV.Broadcast(ap[o3]); s30 = TV.Fma(x, b0, s30); if (v > 1) s31 = TV.Fma(x, b1, s31); if (v > 2) s32 = TV.Fma(x, b2, s32); if (v > 3) s33 = TV.Fma(x, b3, s33); }
            if (r > 4) { x = TV.Broadcast(ap[o4]); s40 = TV.Fma(x, b0, s40); if (v > 1) s41 = TV.Fma(x, b1, s41); if (v > 2) s42 = TV.Fma(x, b2, s42); if (v > 3) s43 = TV.Fma(x, b3, s43); }
            if (r > 5) { x = TV.Broadcast(ap[o5]); s50 = TV.Fma(x, b0, s50); if (v > 1) s51 = TV.Fma(x, b1, s51); if (v > 2) s52 = TV.Fma(x, b2, s52); if (v > 3) s53 = TV.Fma(x, b3, s53); }
            if (r > 6) { x = TV.Broadcast(ap[o6]); s60 = TV.Fma(x, b0, s60); if (v > 1) s61 = TV.Fma(x, b1, s61); if (v > 2) s62 = TV.Fma(x, b2, s62); if (v > 3) s63 = TV.Fma(x, b3, s63); }
            if (r > 7) { x = TV.Broadcast(ap[o7]); s70 = TV.Fma(x, b0, s70); if (v > 1) s71 = TV.Fma(x, b1, s71); if (v > 2) s72 = TV.Fma(x, b2, s72); if (v > 3) s73 = TV.Fma(x, b3, s73); }
        }
        { TV.Store(s00, c + 0 * ldc + 0 * w); if (v > 1) TV.Store(s01, c + 0 * ldc + 1 * w); if (v > 2) TV.Store(s02, c + 0 * ldc + 2 * w); if (v > 3) TV.Store(s03, c + 0 * ldc + 3 * w); }
        if (r > 1) { TV.Store(s10, c + 1 * ldc + 0 * w); if (v > 1) TV.Store(s11, c + 1 * ldc + 1 * w); if (v > 2) TV.Store(s12, c + 1 * ldc + 2 * w); if (v > 3) TV.Store(s13, c + 1 * ldc + 3 * w); }
        if (r > 2) { TV.Store(s20, c + 2 * ldc + 0 * w); if (v > 1) TV.Store(s21, c + 2 * ldc + 1 * w); if (v > 2) TV.Store(s22, c + 2 * ldc + 2 * w); if (v > 3) TV.Store(s23, c + 2 * ldc + 3 * w); }
        if (r > 3) { TV.Store(s30, c + 3 * ldc + 0 * w); if (v > 1) TV.Store(s31, c + 3 * ldc + 1 * w); if (v > 2) TV.Store(s32, c + 3 * ldc + 2 * w); if (v > 3) TV.Store(s33, c + 3 * ldc + 3 * w); }
        if (r > 4) { TV.Store(s40, c + 4 * ldc + 0 * w); if (v > 1) TV.Store(s41, c + 4 * ldc + 1 * w); if (v > 2) TV.Store(s42, c + 4 * ldc + 2 * w); if (v > 3) TV.Store(s43, c + 4 * ldc + 3 * w); }
        if (r > 5) { TV.Store(s50, c + 5 * ldc + 0 * w); if (v > 1) TV.Store(s51, c + 5 * ldc + 1 * w); if (v > 2) TV.Store(s52, c + 5 * ldc + 2 * w); if (v > 3) TV.Store(s53, c + 5 * ldc + 3 * w); }
        if (r > 6) { TV.Store(s60, c + 6 * ldc + 0 * w); if (v > 1) TV.Store(s61, c + 6 * ldc + 1 * w); if (v > 2) TV.Store(s62, c + 6 * ldc + 2 * w); if (v > 3) TV.Store(s63, c + 6 * ldc + 3 * w); }
        if (r > 7) { TV.Store(s70, c + 7 * ldc + 0 * w); if (v > 1) TV.Store(s71, c + 7 * ldc + 1 * w); if (v > 2) TV.Store(s72, c + 7 * ldc + 2 * w); if (v > 3) TV.Store(s73, c + 7 * ldc + 3 * w); }
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
        Parallelism.For((n + NTCols - 1) / NTCols, work, job);
        (job.A, job.B, job.C) = (default, default, default);
    }

    /// Floats of the lane sums <see cref="NTLanes"/> keeps for an m x n product: 8 per element, in
    /// NT's tiles of 4 x 8 elements (partial tiles padded).
    public static int NTLaneCount(int m, int n) => (m + NTRows - 1) / NTRows * ((n + NTCols - 1) / NTCols) * 256;

    /// NT's dot products taken over k in pieces: adds columns [0, count) of A (m rows, row stride
    /// lda) times B (n rows, row stride ldb) to the lane sums of every element of C (starting them
    /// from zero when `first`); <see cref="NTLanesFinish"/> then writes C. Each piece must hold a
    /// multiple of 8 columns, so that every lane continues its chain over p = l, l + 8, ...: the
    /// pieces then give C bitwise as one <see cref="NT"/> over their concatenation. A convolution's
    /// weight gradient takes its samples one at a time this way, each sample's columns in cache.
    public static void NTLanes(ReadOnlyMemory<float> a, int lda, ReadOnlyMemory<float> b, int ldb, int m, int n, int count,
                               Memory<float> lanes, bool first)
    {
        CheckLanePiece(count, lanes.Length, m, n);
        if (m == 0 || n == 0 || count == 0 && !first) return;
        var job = t_ntLanes ??= new NTLanesJob();
        (job.A, job.Lda, job.B, job.Ldb, job.M, job.N, job.Count, job.Lanes, job.First) = (a, lda, b, ldb, m, n, count, lanes, first);
        Parallelism.For((n + NTCols - 1) / NTCols, (long)m * n * count, job);
        (job.A, job.B, job.Lanes) = (default, default, default);
    }

    /// A piece of NTLanes: a multiple of 8 columns, and lane sums for every element of C.
    static void CheckLanePiece(int count, int laneFloats, int m, int n)
    {
        if (count % Lanes != 0) throw new ArgumentException($"NT lanes: a piece of {count} columns, expected a multiple of {Lanes}");
        if (laneFloats < NTLaneCount(m, n)) throw new ArgumentException($"NT lanes: {laneFloats} floats for {m} x {n}, expected {NTLaneCount(m, n)}");
    }

    /// C = (accumulate ? C : 0) + the dot products whose lane sums <see cref="NTLanes"/> holds, with
    /// the tail of the last piece (columns [0, tail) of tailA and tailB, row strides lda and ldb):
    /// each one's fixed horizontal sum, then the tail, as in <see cref="Dot"/>.
    public static void NTLanesFinish(ReadOnlySpan<float> lanes, Span<float> c, int m, int n, bool accumulate,
                                     ReadOnlySpan<float> tailA = default, int lda = 0, ReadOnlySpan<float> tailB = default, int ldb = 0, int tail = 0)
    {
        if (c.Length < m * n) throw new ArgumentException($"NT lanes: C of {c.Length} floats for {m} x {n}");
        if (tail < 0 || tail >= Lanes || tail > 0 && (tailA.Length < (m - 1) * lda + tail || tailB.Length < (n - 1) * ldb + tail))
            throw new ArgumentException($"NT lanes: a tail of {tail} columns, expected 0..7 within both operands");
        fixed (float* l = lanes)
        fixed (float* ta = tailA)
        fixed (float* tb = tailB)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float r = HorizontalSum(Vector256.Load(l + LaneOffset(i, j, m)));
                    for (int p = 0; p < tail; p++) r = MathF.FusedMultiplyAdd(ta[(long)i * lda + p], tb[(long)j * ldb + p], r);
                    c[i * n + j] = accumulate ? c[i * n + j] + r : r;
                }
    }

    /// Where element (i, j)'s 8 lanes are: tile (i / 4, j / 8) of 256 floats, laid out as in <see cref="NTTile"/>.
    static int LaneOffset(int i, int j, int m) =>
        (j / NTCols * ((m + NTRows - 1) / NTRows) + i / NTRows) * 256 + (i % NTRows * 4 + j % NTCols / 2) * 16 + j % 2 * 8;

    [ThreadStatic] static NTLanesJob? t_ntLanes;
    [ThreadStatic] static NTColumnsLanesJob? t_ntColumnsLanes;

    /// <see cref="NTLanes"/> with B a convolution's column matrix read in place (B's rows are its
    /// patch rows, count its output positions): the lanes and chains of NTLanes over the unfolded columns.
    public static void NTLanes(ReadOnlyMemory<float> a, int lda, ConvColumns b, int m, int n, int count, Memory<float> lanes, bool first)
    {
        CheckLanePiece(count, lanes.Length, m, n);
        if (b.Rows.Length < n || b.Chunks.Length < count / Lanes) throw new ArgumentException($"NT lanes: columns of {b.Rows.Length} rows and {b.Chunks.Length * Lanes} positions for {n} x {count}");
        if (m == 0 || n == 0 || count == 0 && !first) return;
        var job = t_ntColumnsLanes ??= new NTColumnsLanesJob();
        (job.A, job.Lda, job.B, job.M, job.N, job.Count, job.Lanes, job.First) = (a, lda, b, m, n, count, lanes, first);
        Parallelism.For((n + NTCols - 1) / NTCols, (long)m * n * count, job);
        (job.A, job.B, job.Lanes) = (default, default, default);
    }

    sealed class NTLanesJob : IBlockJob
    {
        public ReadOnlyMemory<float> A, B;
        public Memory<float> Lanes;
        public int Lda, Ldb, M, N, Count;
        public bool First;

        public void Run(int blk)
        {
            fixed (float* a = A.Span)
            fixed (float* b = B.Span)
            fixed (float* l = Lanes.Span)
                NTLanesBlock(a, Lda, new DenseRows(b, Ldb), M, N, Count, l, First, blk);
        }
    }

    sealed class NTColumnsLanesJob : IBlockJob
    {
        public ReadOnlyMemory<float> A;
        public ConvColumns B;
        public Memory<float> Lanes;
        public int Lda, M, N, Count;
        public bool First;

        public void Run(int blk)
        {
            fixed (float* a = A.Span)
            fixed (float* source = B.Source.Span)
            fixed (int* rows = B.Rows)
            fixed (int* chunks = B.Chunks)
            fixed (float* l = Lanes.Span)
                NTLanesBlock(a, Lda, new ColumnRows(source, rows, chunks), M, N, Count, l, First, blk);
        }
    }

    /// Columns blk * 8 .. + 8 of NTLanes: full 4 x 8 tiles in registers, partial ones row by row.
    static void NTLanesBlock<TB>(float* a, int lda, TB b, int m, int n, int count, float* l, bool first, int blk) where TB : struct, IRowSource
    {
        int j0 = blk * NTCols, cols = Math.Min(NTCols, n - j0);
        bool wide = Vector512.IsHardwareAccelerated, tiles = cols == NTCols && (wide || Vector256.IsHardwareAccelerated);
        for (int i0 = 0; i0 < m; i0 += NTRows)
        {
            float* tile = l + LaneOffset(i0, j0, m);
            float* ai = a + (long)i0 * lda;
            if (tiles && i0 + NTRows <= m)
            {
                if (wide) NTTile(ai, lda, b, j0, 0, count, tile, first);
                else NTPairs(ai, lda, b, j0, 0, count, tile, first);
                continue;
            }
            // A partial tile: row by row, four columns at a time (their lanes lie side by side), the same lanes.
            for (int r = 0; r < Math.Min(NTRows, m - i0); r++)
            {
                float* ar = ai + (long)r * lda, lr = tile + r * 4 * 16;
                int col = 0;
                for (; col + 4 <= cols; col += 4) LaneDot4(ar, b, j0 + col, count, lr + col * 8, first);
                for (; col < cols; col++) LaneDot(ar, b, j0 + col, count, lr + col * 8, first);
            }
        }
    }

    /// One 4 x 8 tile of NT's lane sums in 256-bit registers: columns 0-2, 3-5 and 6-7 of B in
    /// turn, 12 accumulators at a time (the 16 registers of AVX2 hold them beside 3 rows of B and
    /// one of A; pairs of columns, 8 accumulators, left the multiply-adds' latency uncovered).
    static void NTPairs<TB>(float* a, int lda, TB b, int j0, int p0, int p1, float* lanes, bool fresh) where TB : struct, IRowSource
    {
        NTColumns256<TB, R3>(a, lda, b, j0, p0, p1, lanes, 0, fresh);
        NTColumns256<TB, R3>(a, lda, b, j0, p0, p1, lanes, 3, fresh);
        NTColumns256<TB, R2>(a, lda, b, j0, p0, p1, lanes, 6, fresh);
    }

    /// Adds p0..p1 of the dot products of rows a[0..4] with B's rows j0 + c0 .. + C to their lane sums,
    /// in <see cref="NTTile"/>'s layout; each lane is the FMA chain of <see cref="Dot"/>.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void NTColumns256<TB, TC>(float* a, int lda, TB b, int j0, int p0, int p1, float* tile, int c0, bool fresh) where TB : struct, IRowSource where TC : struct, ICount
    {
        int nc = TC.Count;
        float* l0 = tile + LaneOffset(0, c0, NTRows), l1 = tile + LaneOffset(0, c0 + 1, NTRows), l2 = tile + LaneOffset(0, c0 + Math.Min(2, nc - 1), NTRows);
        const int Row = 4 * 16;   // floats between a tile's rows in the lane layout
        Vector256<float> s00, s01, s02 = default, s10, s11, s12 = default, s20, s21, s22 = default, s30, s31, s32 = default;
        if (fresh) s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = Vector256<float>.Zero;
        else
        {
            s00 = Vector256.Load(l0); s01 = Vector256.Load(l1);
            s10 = Vector256.Load(l0 + Row); s11 = Vector256.Load(l1 + Row);
            s20 = Vector256.Load(l0 + 2 * Row); s21 = Vector256.Load(l1 + 2 * Row);
            s30 = Vector256.Load(l0 + 3 * Row); s31 = Vector256.Load(l1 + 3 * Row);
            if (nc > 2) { s02 = Vector256.Load(l2); s12 = Vector256.Load(l2 + Row); s22 = Vector256.Load(l2 + 2 * Row); s32 = Vector256.Load(l2 + 3 * Row); }
        }
        nint o1 = lda, o2 = 2 * (nint)lda, o3 = 3 * (nint)lda;
        float* r0 = b.Row(j0 + c0), r1 = b.Row(j0 + c0 + 1), r2 = b.Row(j0 + c0 + Math.Min(2, nc - 1));
        for (nint p = p0; p < p1; p += Lanes)
        {
            nint o = b.Offset(p);
            float* x = a + p;
            var y0 = Vector256.Load(r0 + o);
            var y1 = Vector256.Load(r1 + o);
            var y2 = nc > 2 ? Vector256.Load(r2 + o) : default;
            var v = Vector256.Load(x); s00 = Vector256.FusedMultiplyAdd(v, y0, s00); s01 = Vector256.FusedMultiplyAdd(v, y1, s01); if (nc > 2) s02 = Vector256.FusedMultiplyAdd(v, y2, s02);
            v = Vector256.Load(x + o1); s10 = Vector256.FusedMultiplyAdd(v, y0, s10); s11 = Vector256.FusedMultiplyAdd(v, y1, s11); if (nc > 2) s12 = Vector256.FusedMultiplyAdd(v, y2, s12);
            v = Vector256.Load(x + o2); s20 = Vector256.FusedMultiplyAdd(v, y0, s20); s21 = Vector256.FusedMultiplyAdd(v, y1, s21); if (nc > 2) s22 = Vector256.FusedMultiplyAdd(v, y2, s22);
            v = Vector256.Load(x + o3); s30 = Vector256.FusedMultiplyAdd(v, y0, s30); s31 = Vector256.FusedMultiplyAdd(v, y1, s31); if (nc > 2) s32 = Vector256.FusedMultiplyAdd(v, y2, s32);
        }
        s00.Store(l0); s01.Store(l1);
        s10.Store(l0 + Row); s11.Store(l1 + Row);
        s20.Store(l0 + 2 * Row); s21.Store(l1 + 2 * Row);
        s30.Store(l0 + 3 * Row); s31.Store(l1 + 3 * Row);
        if (nc > 2) { s02.Store(l2); s12.Store(l2 + Row); s22.Store(l2 + 2 * Row); s32.Store(l2 + 3 * Row); }
    }

    /// <see cref="LaneDot"/> of x with B's rows j .. j + 3, whose lanes follow one another from `lanes`.
    static void LaneDot4<TB>(float* x, TB b, int j, int count, float* lanes, bool fresh) where TB : struct, IRowSource
    {
        float* y0 = b.Row(j), y1 = b.Row(j + 1), y2 = b.Row(j + 2), y3 = b.Row(j + 3);
        Vector256<float> s0, s1, s2, s3;
        if (fresh) s0 = s1 = s2 = s3 = Vector256<float>.Zero;
        else { s0 = Vector256.Load(lanes); s1 = Vector256.Load(lanes + 8); s2 = Vector256.Load(lanes + 16); s3 = Vector256.Load(lanes + 24); }
        for (nint p = 0; p < count; p += Lanes)
        {
            nint o = b.Offset(p);
            var xv = Vector256.Load(x + p);
            s0 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y0 + o), s0);
            s1 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y1 + o), s1);
            s2 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y2 + o), s2);
            s3 = Vector256.FusedMultiplyAdd(xv, Vector256.Load(y3 + o), s3);
        }
        s0.Store(lanes); s1.Store(lanes + 8); s2.Store(lanes + 16); s3.Store(lanes + 24);
    }

    /// The 8 lanes of <see cref="Dot"/> of x and B's row j over [0, count), added to lanes (or from zero when fresh).
    static void LaneDot<TB>(float* x, TB b, int j, int count, float* lanes, bool fresh) where TB : struct, IRowSource
    {
        float* y = b.Row(j);
        var s = fresh ? Vector256<float>.Zero : Vector256.Load(lanes);
        for (nint p = 0; p < count; p += Lanes) s = Vector256.FusedMultiplyAdd(Vector256.Load(x + p), Vector256.Load(y + b.Offset(p)), s);
        s.Store(lanes);
    }

    /// Columns j0..j1 (at most 8) of every row of C.
    static void NTBlock(ReadOnlySpan<float> aSpan, ReadOnlySpan<float> bSpan, Span<float> cSpan, int m, int j0, int j1, int n, int k, bool acc)
    {
        fixed (float* a = aSpan)
        fixed (float* b = bSpan)
        fixed (float* c = cSpan)
        {
            int i = 0;
            bool wide = Vector512.IsHardwareAccelerated;
            if (j1 - j0 == NTCols && (wide || Vector256.IsHardwareAccelerated) && k >= Lanes)
            {
                int full = m / NTRows * NTRows;
                if (full > 0)
                {
                    // Lane sums of every 4 x 8 tile, carried from one k chunk to the next.
                    float[] lanes = Scratch(ref t_lanes, full / NTRows * 16 * 16);
                    int kv = k / Lanes * Lanes;
                    fixed (float* l = lanes)
                    {
                        for (int p0 = 0; p0 < kv; p0 += NTChunk)
                        {
                            int p1 = Math.Min(kv, p0 + NTChunk);
                            for (int t = 0; t < full; t += NTRows)
                                if (wide) NTTile(a + (long)t * k, k, new DenseRows(b, k), j0, p0, p1, l + t / NTRows * 256, p0 == 0);
                                else NTPairs(a + (long)t * k, k, new DenseRows(b, k), j0, p0, p1, l + t / NTRows * 256, p0 == 0);
                        }
                        for (int t = 0; t < full; t += NTRows)
                            NTFinish(a + (long)t * k, b + (long)j0 * k, k, kv, l + t / NTRows * 256, c + (long)t * n + j0, n, acc);
                    }
                    i = full;
                }
            }
            for (; i < m; i++)
            {
                float* ar = a + (long)i * k;
                float* cr = c + (long)i * n;
                int j = j0;
                for (; j + 4 <= j1; j += 4) Dot4(ar, b + (long)j * k, k, cr + j, acc);
                for (; j < j1; j++)
                {
                    float d = Dot(ar, b + (long)j * k, k);
                    cr[j] = acc ? cr[j] + d : d;
                }
            }
        }
    }

    /// Adds p0..p1 of the dot products of rows a[0..4] with rows b[0..8] to their lane sums:
    /// lanes[(row * 4 + pair) * 16 ..] holds (row, 2 pair) in its lower 8 floats, (row, 2 pair + 1)
    /// in its upper 8. Each lane l is the FMA chain over p = l, l + 8, ... of <see cref="Dot"/>.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void NTTile<TB>(float* a, int lda, TB b, int j0, int p0, int p1, float* lanes, bool fresh) where TB : struct, IRowSource
    {
        Vector512<float> s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33;
        if (fresh)
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = Vector512<float>.Zero;
        else
        {
            s00 = Vector512.Load(lanes); s01 = Vector512.Load(lanes + 16); s02 = Vector512.Load(lanes + 32); s03 = Vector512.Load(lanes + 48);
            s10 = Vector512.Load(lanes + 64); s11 = Vector512.Load(lanes + 80); s12 = Vector512.Load(lanes + 96); s13 = Vector512.Load(lanes + 112);
            s20 = Vector512.Load(lanes + 128); s21 = Vector512.Load(lanes + 144); s22 = Vector512.Load(lanes + 160); s23 = Vector512.Load(lanes + 176);
            s30 = Vector512.Load(lanes + 192); s31 = Vector512.Load(lanes + 208); s32 = Vector512.Load(lanes + 224); s33 = Vector512.Load(lanes + 240);
        }
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda;
        float* b0 = b.Row(j0), b1 = b.Row(j0 + 1), b2 = b.Row(j0 + 2), b3 = b.Row(j0 + 3), b4 = b.Row(j0 + 4), b5 = b.Row(j0 + 5), b6 = b.Row(j0 + 6), b7 = b.Row(j0 + 7);
        for (nint p = p0; p < p1; p += Lanes)
        {
            nint o = b.Offset(p);
            var y0 = Pair(b0 + o, b1 + o);
            var y1 = Pair(b2 + o, b3 + o);
            var y2 = Pair(b4 + o, b5 + o);
            var y3 = Pair(b6 + o, b7 + o);
            var x = Twice(a + p);
            s00 = Vector512.FusedMultiplyAdd(x, y0, s00); s01 = Vector512.FusedMultiplyAdd(x, y1, s01);
            s02 = Vector512.FusedMultiplyAdd(x, y2, s02); s03 = Vector512.FusedMultiplyAdd(x, y3, s03);
            x = Twice(a1 + p);
            s10 = Vector512.FusedMultiplyAdd(x, y0, s10); s11 = Vector512.FusedMultiplyAdd(x, y1, s11);
            s12 = Vector512.FusedMultiplyAdd(x, y2, s12); s13 = Vector512.FusedMultiplyAdd(x, y3, s13);
            x = Twice(a2 + p);
            s20 = Vector512.FusedMultiplyAdd(x, y0, s20); s21 = Vector512.FusedMultiplyAdd(x, y1, s21);
            s22 = Vector512.FusedMultiplyAdd(x, y2, s22); s23 = Vector512.FusedMultiplyAdd(x, y3, s23);
            x = Twice(a3 + p);
            s30 = Vector512.FusedMultiplyAdd(x, y0, s30); s31 = Vector512.FusedMultiplyAdd(x, y1, s31);
            s32 = Vector512.FusedMultiplyAdd(x, y2, s32); s33 = Vector512.FusedMultiplyAdd(x, y3, s33);
        }
        s00.Store(lanes); s01.Store(lanes + 16); s02.Store(lanes + 32); s03.Store(lanes + 48);
        s10.Store(lanes + 64); s11.Store(lanes + 80); s12.Store(lanes + 96); s13.Store(lanes + 112);
        s20.Store(lanes + 128); s21.Store(lanes + 144); s22.Store(lanes + 160); s23.Store(lanes + 176);
        s30.Store(lanes + 192); s31.Store(lanes + 208); s32.Store(lanes + 224); s33.Store(lanes + 240);
    }

    // Vector512.Create(lower, upper) of two loads compiled to a load and two inserts each (measured in
    // the JIT's listing): 16 shuffles per 16 multiply-adds. One load with an insert from memory, and
    // a broadcast load, put the same floats in the same lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Pair(float* lower, float* upper) => Avx512F.InsertVector256(Vector256.Load(lower).ToVector512Unsafe(), Vector256.Load(upper), 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Twice(float* x) => Avx512DQ.BroadcastVector256ToVector512(x);

    /// The end of <see cref="Dot"/> for each element of a 4 x 8 tile: the horizontal sum of its
    /// lanes, then the scalar tail p = kv..k-1, then the store or the add into C.
    static void NTFinish(float* a, float* b, int k, int kv, float* lanes, float* c, int ldc, bool acc)
    {
        for (int row = 0; row < NTRows; row++)
            for (int col = 0; col < NTCols; col++)
            {
                float r = HorizontalSum(Vector256.Load(lanes + (row * 4 + col / 2) * 16 + col % 2 * 8));
                float* x = a + (long)row * k;
                float* y = b + (long)col * k;
                for (int p = kv; p < k; p++) r = MathF.FusedMultiplyAdd(x[p], y[p], r);
                float* dst = c + (long)row * ldc + col;
                *dst = acc ? *dst + r : r;
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
