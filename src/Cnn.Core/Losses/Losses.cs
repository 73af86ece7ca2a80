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

/// Softmax followed by cross-entropy, fused: d/dz = softmax(z) - onehot(y).
public sealed class SoftmaxCrossEntropy : ILoss
{
    public string Name => "cross-entropy";

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
            var grow = g.Slice(s * classes, classes);
            int label = labels[s];
            if ((uint)label >= (uint)classes) throw new ArgumentException($"label {label} out of range for {classes} classes");
            float max = row[0];
            for (int j = 1; j < classes; j++) max = MathF.Max(max, row[j]);
            double sum = 0;
            for (int j = 0; j < classes; j++) sum += Math.Exp(row[j] - max);
            double logSum = Math.Log(sum) + max;
            total += logSum - row[label];
            for (int j = 0; j < classes; j++)
            {
                double p = Math.Exp(row[j] - logSum);
                grow[j] = (float)((p - (j == label ? 1 : 0)) * gradScale);
            }
            if (LossFunctions.ArgMax(row) == label) correct++;
        }
        return total;
    }
}

/// Mean squared error against one-hot targets: per sample (1/K) sum_j (z_j - t_j)^2.
public sealed class MeanSquaredError : ILoss
{
    public string Name => "mse";

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
            var grow = g.Slice(s * classes, classes);
            int label = labels[s];
            if ((uint)label >= (uint)classes) throw new ArgumentException($"label {label} out of range for {classes} classes");
            double sum = 0;
            for (int j = 0; j < classes; j++)
            {
                double d = row[j] - (j == label ? 1.0 : 0.0);
                sum += d * d;
                grow[j] = (float)(2 * d / classes * gradScale);
            }
            total += sum / classes;
            if (LossFunctions.ArgMax(row) == label) correct++;
        }
        return total;
    }
}
