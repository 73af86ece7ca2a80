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
