using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Tests.Kernels;

public class GemmTests
{
    static float[] Random(int n, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = rng.NextFloat() * 2 - 1;
        return a;
    }

    // Tolerance: float32 FMA chains of length k against a double-precision reference;
    // relative error grows like sqrt(k) * 2^-24, so 1e-5 * sqrt(k) with an absolute floor is ample.
    static void AssertClose(float[] expected, float[] actual, int k)
    {
        float tol = 1e-5f * MathF.Sqrt(k) + 1e-6f;
        for (int i = 0; i < expected.Length; i++)
            Assert.True(MathF.Abs(expected[i] - actual[i]) <= tol * MathF.Max(1, MathF.Abs(expected[i])),
                $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(4, 16, 3)]
    [InlineData(5, 17, 9)]
    [InlineData(7, 600, 25)]   // column blocks plus a tail, parallel path
    [InlineData(13, 37, 150)]
    [InlineData(64, 1100, 288)]
    public void NN_matches_reference_with_and_without_accumulate_and_transposed_A(int m, int n, int k)
    {
        var a = Random(m * k, 1);
        var b = Random(k * n, 2);
        foreach (bool transposed in new[] { false, true })
        {
            int rs = transposed ? 1 : k, cs = transposed ? m : 1;   // the same buffer read as A or as (A^T)^T
            foreach (bool acc in new[] { false, true })
            {
                var expected = Random(m * n, 3);
                var actual = (float[])expected.Clone();
                GemmReference.NN(a, rs, cs, b, expected, m, n, k, acc);
                Gemm.NN(a.AsMemory(), rs, cs, b.AsMemory(), actual.AsMemory(), m, n, k, acc);
                AssertClose(expected, actual, k);
            }
        }
    }

    [Theory]
    [InlineData(4, 100, 9)]     // 512-bit passes of 32 columns, a 256-bit pass of 16, a tail of 4
    [InlineData(9, 47, 30)]
    [InlineData(64, 1100, 288)]  // packed panels
    [InlineData(37, 600, 40)]    // packed panels, tiles of 8 and one of 5, a tail of 24 columns
    [InlineData(30, 50, 40)]     // 256-bit: packed panels of 16, tiles of 6; 128-bit: panels of 8; tails of 2 and 18 columns
    [InlineData(11, 13, 3)]      // unpacked tiles of 6 and 5 rows (256/128-bit), a tail of 5 or 13 columns
    [InlineData(16, 1030, 128)]  // a dense layer's input gradient: two tiles and a partial one on each packed panel, a tail of 6 columns
    public void NN_is_bitwise_one_fma_chain_per_element_whatever_the_vector_width(int m, int n, int k)
    {
        // Every path (AVX-512, AVX2, scalar tail) must give each element exactly the chain
        // c = fma(a[i,p], b[p,j], c) for p = 0..k-1: that is what makes results independent of the CPU.
        var a = Random(m * k, 7);
        var b = Random(k * n, 8);
        var actual = new float[m * n];
        Gemm.NN(a.AsMemory(), k, 1, b.AsMemory(), actual.AsMemory(), m, n, k, accumulate: false);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float c = 0f;
                for (int p = 0; p < k; p++) c = MathF.FusedMultiplyAdd(a[i * k + p], b[p * n + j], c);
                Assert.True(BitConverter.SingleToInt32Bits(c) == BitConverter.SingleToInt32Bits(actual[i * n + j]), $"element ({i},{j}): {c} != {actual[i * n + j]}");
            }
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 5, 7)]
    [InlineData(6, 9, 17)]
    [InlineData(64, 288, 2304)]
    [InlineData(10, 120, 84)]
    public void NT_matches_reference(int m, int n, int k)
    {
        var a = Random(m * k, 4);
        var b = Random(n * k, 5);
        foreach (bool acc in new[] { false, true })
        {
            var expected = Random(m * n, 6);
            var actual = (float[])expected.Clone();
            GemmReference.NT(a, b, expected, m, n, k, acc);
            Gemm.NT(a.AsMemory(), b.AsMemory(), actual.AsMemory(), m, n, k, acc);
            AssertClose(expected, actual, k);
        }
    }

    [Theory]
    [InlineData(6, 25, 2509)]    // a 4 x 8 tile, 2 rows and 1 column left over, 3 k chunks and a scalar tail
    [InlineData(8, 16, 7)]       // k shorter than the 8 lanes: no vector part at all
    [InlineData(13, 19, 1024)]   // exactly one k chunk
    public void NT_is_bitwise_the_eight_lane_dot_product_whatever_the_tiling(int m, int n, int k)
    {
        // Every element must be exactly the dot product of Gemm's definition: lane l sums
        // p = l, l + 8, ... by FMA, the lanes are added in a fixed tree, then the tail p >= k/8*8
        // by FMA, whether it came from a tile, a chunked tile or a leftover row or column.
        var a = Random(m * k, 10);
        var b = Random(n * k, 11);
        var actual = Random(m * n, 12);
        var before = (float[])actual.Clone();
        Gemm.NT(a.AsMemory(), b.AsMemory(), actual.AsMemory(), m, n, k, accumulate: true);
        int kv = k / 8 * 8;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                var lane = new float[8];
                for (int p = 0; p < kv; p++) lane[p % 8] = MathF.FusedMultiplyAdd(a[i * k + p], b[j * k + p], lane[p % 8]);
                float r = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
                for (int p = kv; p < k; p++) r = MathF.FusedMultiplyAdd(a[i * k + p], b[j * k + p], r);
                float expected = before[i * n + j] + r;
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual[i * n + j]),
                    $"element ({i},{j}): {expected} != {actual[i * n + j]}");
            }
    }

    [Fact]
    public void Results_are_bitwise_identical_for_one_and_several_threads()
    {
        int m = 64, n = 2000, k = 300;
        var a = Random(m * k, 7);
        var b = Random(k * n, 8);
        var bt = Random(n * k, 9);
        float[] Run(int threads, bool nt)
        {
            int saved = Parallelism.MaxThreads;
            Parallelism.MaxThreads = threads;
            try
            {
                var c = new float[m * n];
                if (nt) Gemm.NT(a.AsMemory(), bt.AsMemory(), c.AsMemory(), m, n, k, false);
                else Gemm.NN(a.AsMemory(), k, 1, b.AsMemory(), c.AsMemory(), m, n, k, false);
                return c;
            }
            finally { Parallelism.MaxThreads = saved; }
        }
        Assert.Equal(Run(1, false), Run(4, false));
        Assert.Equal(Run(1, true), Run(4, true));
    }
}
