using DistTrain.Cnn.Training;

namespace DistTrain.Cnn.Tests.Training;

public class FixedPointGradientTests
{
    static float[][] Parts(int count, int length, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        return Enumerable.Range(0, count).Select(_ =>
            Enumerable.Range(0, length).Select(_ => (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.NextInt(9) - 7))).ToArray()).ToArray();
    }

    [Fact]
    public void Sum_is_bitwise_independent_of_order_and_grouping()
    {
        var parts = Parts(12, 1000, 1);
        float[] Reduce(IEnumerable<IEnumerable<int>> groups)
        {
            // Each group is summed separately (one "worker"), then the groups are added in reverse.
            var partial = groups.Select(g =>
            {
                var s = new long[1000];
                foreach (int i in g) Assert.True(FixedPointGradient.Accumulate(parts[i], s));
                return s;
            }).Reverse().ToList();
            var total = new long[1000];
            foreach (var p in partial) FixedPointGradient.Add(total, p);
            var result = new float[1000];
            FixedPointGradient.ToFloat(total, result);
            return result;
        }
        var one = Reduce([Enumerable.Range(0, 12)]);
        var three = Reduce([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]);
        var shuffled = Reduce([[11, 3], [7, 0, 5], [2], [9, 1, 10, 4, 8, 6]]);
        Assert.Equal(one, three);
        Assert.Equal(one, shuffled);
    }

    [Fact]
    public void Take_adds_or_writes_afresh_and_leaves_the_gradient_clear()
    {
        // On every path: 997 values (vectors, then a tail), with midpoints and values near the limit.
        var values = Parts(1, 997, 5)[0];
        for (int i = 0; i < 64; i++) values[i * 7] = (float)((i - 32 + 0.5) * Math.Pow(2, -40));
        values[5] = 4_000_000f;
        var start = Parts(1, 997, 6)[0].Select(v => (long)(v * 1e12)).ToArray();

        var added = (long[])start.Clone();
        Assert.True(FixedPointGradient.Accumulate(values, added));
        var taken = (long[])start.Clone();
        var gradient = (float[])values.Clone();
        Assert.True(FixedPointGradient.Take(gradient, taken, fresh: false));
        Assert.Equal(added, taken);
        Assert.All(gradient, v => Assert.Equal(0, BitConverter.SingleToInt32Bits(v)));   // +0, as a cleared vector

        var fromZero = new long[997];
        Assert.True(FixedPointGradient.Accumulate(values, fromZero));
        var fresh = (long[])start.Clone();   // whatever the sums held before
        gradient = (float[])values.Clone();
        Assert.True(FixedPointGradient.Take(gradient, fresh, fresh: true));
        Assert.Equal(fromZero, fresh);
        Assert.All(gradient, v => Assert.Equal(0f, v));

        gradient = (float[])values.Clone();
        gradient[500] = float.NaN;
        Assert.False(FixedPointGradient.Take(gradient, new long[997], fresh: true));
    }

    [Fact]
    public void Vector_path_gives_the_bits_of_the_element_by_element_path()
    {
        // 16 at a time where the CPU has wide vectors, one at a time for the tail: a length-1 span
        // only takes the scalar path, so comparing the two covers rounding of exact midpoints
        // (k + 1/2) * 2^-40 to even, both signs, and values near the range limit.
        var values = Parts(1, 997, 3)[0];
        for (int i = 0; i < 64; i++) values[i * 7] = (float)((i - 32 + 0.5) * Math.Pow(2, -40));
        values[5] = 4_000_000f;
        values[6] = -4_000_000f;
        // Either side of 2^11, where the 256-bit path hands a vector to the scalar loop; midpoints far
        // from zero ((k + 1/2) * 2^-40 for large k); subnormals and a signed zero.
        float[] edges = [2047.9999f, -2047.9999f, 2048f, -2048f, 3000.7f, -5000.3f, (float)((1 << 22) + 0.5) * MathF.Pow(2, -40),
                         (float)(-(1 << 21) - 0.5) * MathF.Pow(2, -40), 1e-40f, -1e-40f, -0f, (float)(3.5 * Math.Pow(2, -40))];
        edges.CopyTo(values.AsSpan(600));
        var start = Parts(1, 997, 4)[0].Select(v => (long)(v * 1e12)).ToArray();
        var together = (long[])start.Clone();
        var oneByOne = (long[])start.Clone();
        Assert.True(FixedPointGradient.Accumulate(values, together));
        for (int i = 0; i < values.Length; i++) Assert.True(FixedPointGradient.Accumulate(values.AsSpan(i, 1), oneByOne.AsSpan(i, 1)));
        Assert.Equal(oneByOne, together);

        var floats = new float[997];
        var floatsOneByOne = new float[997];
        FixedPointGradient.ToFloat(together, floats);
        for (int i = 0; i < 997; i++) FixedPointGradient.ToFloat(together.AsSpan(i, 1), floatsOneByOne.AsSpan(i, 1));
        Assert.Equal(floatsOneByOne.Select(BitConverter.SingleToInt32Bits), floats.Select(BitConverter.SingleToInt32Bits));

        var added = (long[])start.Clone();
        FixedPointGradient.Add(added, together);
        Assert.Equal(start.Zip(together, (a, b) => a + b), added);

        // A NaN or too-large value in the middle of a vector is still refused.
        foreach (float bad in new[] { float.NaN, 5e6f })
        {
            var withBad = (float[])values.Clone();
            withBad[21] = bad;
            Assert.False(FixedPointGradient.Accumulate(withBad, new long[997]));
        }
    }

    [Fact]
    public void Sum_is_within_one_quantum_per_part_of_the_exact_sum()
    {
        var parts = Parts(8, 500, 2);
        var sums = new long[500];
        foreach (var p in parts) FixedPointGradient.Accumulate(p, sums);
        var result = new float[500];
        FixedPointGradient.ToFloat(sums, result);
        for (int i = 0; i < 500; i++)
        {
            double exact = parts.Sum(p => (double)p[i]);
            // 8 roundings of at most 2^-41 each, then one float rounding (relative 2^-24).
            double tol = 8 * Math.Pow(2, -41) + Math.Abs(exact) * Math.Pow(2, -24);
            Assert.True(Math.Abs(result[i] - exact) <= tol, $"{i}: {result[i]} vs {exact}");
        }
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(1e7f)]
    public void Non_finite_or_huge_values_are_reported(float bad)
    {
        Assert.False(FixedPointGradient.Accumulate([1f, bad], new long[2]));
    }
}
