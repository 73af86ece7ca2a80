using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Tests.Layers;

/// Central finite differences against the analytic Backward, for inputs and parameters.
/// The probe loss is L = sum_i r_i * y_i with fixed random r, accumulated in double.
/// Tolerance: |analytic - numeric| <= 2e-3 + 2e-2 * |numeric|. With eps = 1e-2 the float32
/// rounding of the forward pass (about 1e-7 * sum|r_i y_i| ~ 1e-5) contributes < 1e-3 after
/// division by 2 eps, and the O(eps^2) truncation of smooth activations stays below 1e-4.
public static class GradientCheck
{
    public const double Eps = 1e-2;

    public static void Run(LayerSpec layer, SampleShape input, int batch, ulong seed, Func<DeterministicRandom, float>? inputSampler = null, double eps = Eps)
    {
        var model = Model.Create(new ModelSpec { Name = "probe", Input = [input.C, input.H, input.W], Layers = [layer] });
        model.Initialize(seed);
        var l = model.Layers[0];
        l.ComputeInputGradient = true;
        // Biases start at zero; make them non-trivial so their gradient path is exercised.
        var rng = new DeterministicRandom(seed + 1);
        for (int i = 0; i < model.Parameters.Length; i++) model.Parameters[i] += (rng.NextFloat() - 0.5f) * 0.2f;

        var x = new Tensor(input, batch);
        var xs = x.Span;
        for (int i = 0; i < xs.Length; i++) xs[i] = inputSampler is null ? rng.NextFloat() * 2 - 1 : inputSampler(rng);
        var ids = Enumerable.Range(0, batch).ToArray();
        var ctx = new BatchContext(true, seed, 0, 0, ids);

        var y = model.Forward(x, ctx);
        var r = new float[y.Length];
        for (int i = 0; i < r.Length; i++) r[i] = rng.NextFloat() * 2 - 1;
        var gy = new Tensor(y.Shape, batch);
        r.CopyTo(gy.Span);
        model.ZeroGradients();
        var gx = l.Backward(gy);
        var inputGrad = gx.Span.ToArray();
        var paramGrad = (float[])model.Gradients.Clone();

        double Loss()
        {
            var yy = model.Forward(x, ctx).Span;
            double s = 0;
            for (int i = 0; i < yy.Length; i++) s += (double)r[i] * yy[i];
            return s;
        }

        for (int i = 0; i < xs.Length; i++)
            Compare($"{layer.Type} d/dx[{i}]", inputGrad[i], Numeric(() => x.Span, i, Loss, eps));
        // Statistics (BatchNorm's running mean and variance) are not trained: their slots hold the forward pass's contributions.
        bool Statistic(int i) => model.StatisticRanges.Any(r => i >= r.Offset && i < r.Offset + r.Length);
        for (int i = 0; i < model.Parameters.Length; i++)
            if (!Statistic(i)) Compare($"{layer.Type} d/dparam[{i}]", paramGrad[i], Numeric(() => model.Parameters, i, Loss, eps));
    }

    static double Numeric(Func<Span<float>> values, int i, Func<double> loss, double eps)
    {
        float saved = values()[i];
        values()[i] = (float)(saved + eps);
        double plus = loss();
        values()[i] = (float)(saved - eps);
        double minus = loss();
        values()[i] = saved;
        return (plus - minus) / (2 * eps);
    }

    public static void Compare(string what, double analytic, double numeric)
    {
        double tol = 2e-3 + 2e-2 * Math.Abs(numeric);
        Assert.True(Math.Abs(analytic - numeric) <= tol, $"{what}: analytic {analytic:G6}, numeric {numeric:G6}");
    }
}
