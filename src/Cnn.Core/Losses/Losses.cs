namespace DistTrain.Cnn.Losses;

/// A loss over a batch of logits and integer labels. It returns the SUM of the per-sample losses
/// and writes gradScale * d(sum)/d(logits) into the gradient; the trainer passes 1/globalBatch so
/// micro-batch gradients add up to the gradient of the mean loss.
public interface ILoss
{
    string Name { get; }
    double Compute(Tensor logits, ReadOnlySpan<int> labels, Tensor gradLogits, float gradScale, out int correct);
}

public static class LossFunctions
{
    public static ILoss Create(string name) => name switch
    {
        "cross-entropy" => new SoftmaxCrossEntropy(),
        "mse" => new MeanSquaredError(),
        _ => throw new ArgumentException($"--loss: expected cross-entropy or mse, got '{name}'"),
    };

    internal static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int j = 1; j < v.Length; j++) if (v[j] > v[best]) best = j;
        return best;
    }
}

/// A loss that is a sum over samples of a function of one sample's logits and label.
public abstract class PerSampleLoss : ILoss
{
    public abstract string Name { get; }

    public double Compute(Tensor logits, ReadOnlySpan<int> labels, Tensor gradLogits, float gradScale, out int correct)
    {
        int n = logits.N, classes = logits.Shape.Size;
        gradLogits.Resize(n);
        ReadOnlySpan<float> z = logits.Span;
        Span<float> g = gradLogits.Span;
        double total = 0;
        correct = 0;
        for (int s = 0; s < n; s++)
        {
            var row = z.Slice(s * classes, classes);
            int label = labels[s];
            if ((uint)label >= (uint)classes) throw new ArgumentException($"label {label} out of range for {classes} classes");
            total += Sample(row, label, g.Slice(s * classes, classes), gradScale);
            if (LossFunctions.ArgMax(row) == label) correct++;
        }
        return total;
    }

    /// The loss of one sample; writes gradScale * d(loss)/d(z) into grad.
    protected abstract double Sample(ReadOnlySpan<float> z, int label, Span<float> grad, float gradScale);
}

/// Softmax followed by cross-entropy, fused: d/dz = softmax(z) - onehot(y). Log-sum-exp in double.
public sealed class SoftmaxCrossEntropy : PerSampleLoss
{
    public override string Name => "cross-entropy";

    protected override double Sample(ReadOnlySpan<float> z, int label, Span<float> grad, float gradScale)
    {
        float max = z[0];
        for (int j = 1; j < z.Length; j++) max = MathF.Max(max, z[j]);
        double sum = 0;
        for (int j = 0; j < z.Length; j++) sum += Math.Exp(z[j] - max);
        double logSum = Math.Log(sum) + max;
        for (int j = 0; j < z.Length; j++)
            grad[j] = (float)((Math.Exp(z[j] - logSum) - (j == label ? 1 : 0)) * gradScale);
        return logSum - z[label];
    }
}

/// Mean squared error against one-hot targets: per sample (1/K) sum_j (z_j - t_j)^2.
public sealed class MeanSquaredError : PerSampleLoss
{
    public override string Name => "mse";

    protected override double Sample(ReadOnlySpan<float> z, int label, Span<float> grad, float gradScale)
    {
        double sum = 0;
        for (int j = 0; j < z.Length; j++)
        {
            double d = z[j] - (j == label ? 1.0 : 0.0);
            sum += d * d;
            grad[j] = (float)(2 * d / z.Length * gradScale);
        }
        return sum / z.Length;
    }
}
