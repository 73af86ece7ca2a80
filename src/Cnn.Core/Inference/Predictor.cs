using DistTrain.Cnn.Data;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Training;

namespace DistTrain.Cnn.Inference;

/// One class of a prediction: its label, its name and the softmax probability of it.
public readonly record struct ClassScore(int Label, string Name, double Probability);

/// Classifies images with a trained model, in batches, through the same forward pass as training
/// and evaluation (its kernels fork over the machine's threads when a batch is large enough).
public sealed class Predictor(Model model, InferenceInfo info)
{
    public const int DefaultBatch = 256;
    readonly GradientComputer _forward = new(model, new SoftmaxCrossEntropy());

    public Model Model => model;
    public InferenceInfo Info => info;

    /// The logits of every image, N x outputs, row-major.
    public float[] Logits(Dataset images, int batch = DefaultBatch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        int outputs = model.OutputShape.Size;
        var logits = new float[(long)images.Count * outputs];
        var ids = new int[Math.Min(batch, Math.Max(1, images.Count))];
        for (int first = 0; first < images.Count; first += ids.Length)
        {
            int n = Math.Min(ids.Length, images.Count - first);
            for (int i = 0; i < n; i++) ids[i] = first + i;
            _forward.Logits(images, ids.AsMemory(0, n)).CopyTo(logits.AsSpan(first * outputs, n * outputs));
        }
        return logits;
    }

    /// The `top` most probable classes of one image's logits, most probable first (ties: lower label first).
    public ClassScore[] Top(ReadOnlySpan<float> logits, int top)
    {
        double max = double.NegativeInfinity;
        foreach (float z in logits) max = Math.Max(max, z);
        double sum = 0;
        foreach (float z in logits) sum += Math.Exp(z - max);
        var order = Enumerable.Range(0, logits.Length).ToArray();
        var values = logits.ToArray();
        Array.Sort(order, (a, b) => values[b].CompareTo(values[a]) is var c && c != 0 ? c : a.CompareTo(b));
        return [.. order.Take(Math.Min(top, order.Length)).Select(k => new ClassScore(k, info.Classes[k], Math.Exp(values[k] - max) / sum))];
    }

    /// The label of the largest logit (the lowest label among equal ones), as accuracy counts it.
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int k = 1; k < logits.Length; k++) if (logits[k] > logits[best]) best = k;
        return best;
    }
}
