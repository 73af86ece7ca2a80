using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Tests.Layers;

namespace DistTrain.Cnn.Tests.Losses;

public class LossTests
{
    static (Tensor logits, int[] labels) Sample(int n, int classes, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        var z = new Tensor(new SampleShape(classes, 1, 1), n);
        for (int i = 0; i < z.Length; i++) z.Span[i] = rng.NextFloat() * 6 - 3;
        var labels = Enumerable.Range(0, n).Select(_ => rng.NextInt(classes)).ToArray();
        return (z, labels);
    }

    [Theory]
    [InlineData("cross-entropy", 1, 2)]
    [InlineData("cross-entropy", 4, 10)]
    [InlineData("mse", 1, 3)]
    [InlineData("mse", 5, 10)]
    public void Gradient_matches_finite_differences(string name, int n, int classes)
    {
        var loss = LossFunctions.Create(name);
        var (z, labels) = Sample(n, classes, 42);
        var g = new Tensor(z.Shape, n);
        const float scale = 0.5f;
        loss.Compute(z, labels, g, scale, out _);
        var analytic = g.Span.ToArray();
        var scratch = new Tensor(z.Shape, n);
        for (int i = 0; i < z.Length; i++)
        {
            float saved = z.Span[i];
            z.Span[i] = saved + 1e-2f;
            double plus = loss.Compute(z, labels, scratch, 0, out _);
            z.Span[i] = saved - 1e-2f;
            double minus = loss.Compute(z, labels, scratch, 0, out _);
            z.Span[i] = saved;
            GradientCheck.Compare($"{name} dz[{i}]", analytic[i], scale * (plus - minus) / 2e-2);
        }
    }

    [Fact]
    public void Cross_entropy_of_known_logits()
    {
        // logits [0, ln 3] -> softmax [1/4, 3/4]; label 1 -> loss = -ln(3/4); grad = [1/4, -1/4].
        var z = new Tensor(new SampleShape(2, 1, 1), 1);
        z.Span[0] = 0; z.Span[1] = MathF.Log(3);
        var g = new Tensor(z.Shape, 1);
        double l = new SoftmaxCrossEntropy().Compute(z, [1], g, 1f, out int correct);
        Assert.Equal(-Math.Log(0.75), l, 6);
        Assert.Equal(0.25f, g.Span[0], 6);
        Assert.Equal(-0.25f, g.Span[1], 6);
        Assert.Equal(1, correct);
    }

    [Fact]
    public void Cross_entropy_is_stable_for_huge_logits()
    {
        var z = new Tensor(new SampleShape(3, 1, 1), 1);
        z.Span[0] = 1000; z.Span[1] = -1000; z.Span[2] = 0;
        var g = new Tensor(z.Shape, 1);
        double l = new SoftmaxCrossEntropy().Compute(z, [2], g, 1f, out _);
        Assert.Equal(1000, l, 3);
        Assert.True(g.Span.ToArray().All(float.IsFinite));
    }

    [Fact]
    public void Mse_of_known_values()
    {
        // z = [0.5, 0.5], label 0 -> t = [1, 0]; loss = ((-0.5)^2 + 0.5^2) / 2 = 0.25; grad = 2 (z - t) / 2 = [-0.5, 0.5]
        var z = new Tensor(new SampleShape(2, 1, 1), 1);
        z.Span.Fill(0.5f);
        var g = new Tensor(z.Shape, 1);
        double l = new MeanSquaredError().Compute(z, [0], g, 1f, out _);
        Assert.Equal(0.25, l, 6);
        Assert.Equal(-0.5f, g.Span[0], 6);
        Assert.Equal(0.5f, g.Span[1], 6);
    }
}
