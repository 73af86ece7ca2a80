using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Training;

/// The memory a training process needs, from the model's spec before anything is allocated, so
/// that a model too big for the machine is refused with its estimate instead of aborting midway.
/// A worker holds: the parameters twice (the vector in use and the one kept to undo a step), the
/// optimizer's state twice (likewise), per compute thread a float gradient and its exact int64 sum
/// plus the exchange's int64 sum, and per thread the activations of a micro-batch (outputs, their
/// gradients and scratch: three values per output value). The coordinator holds one copy of the
/// parameters and the optimizer's state. An estimate, on the generous side; .NET's own overhead
/// (tens of MB) is not counted.
public sealed record MemoryEstimate(long ParameterBytes, long OptimizerBytes, long GradientBytes, long ActivationBytes, long CoordinatorBytes)
{
    public long WorkerBytes => ParameterBytes + OptimizerBytes + GradientBytes + ActivationBytes;

    public static MemoryEstimate Of(Model.Footprint model, OptimizerKind optimizer, int microBatch, int threads)
    {
        long p = model.Parameters;
        int state = optimizer switch { OptimizerKind.Sgd => 0, OptimizerKind.Momentum => 1, _ => 2 };
        return new MemoryEstimate(
            ParameterBytes: 2 * 4 * p,
            OptimizerBytes: 2 * 4 * p * state,
            GradientBytes: threads * (4 + 8) * p + 8 * p,
            ActivationBytes: 3 * 4L * microBatch * model.ActivationsPerSample * threads,
            CoordinatorBytes: 4 * p * (1 + state));
    }

    /// The bytes of `localWorkers` worker processes and the coordinator on one machine.
    public long OnThisMachine(int localWorkers) => localWorkers * WorkerBytes + CoordinatorBytes;

    /// What a process may use when no --memory-budget is given: 90% of the memory .NET may use here.
    public static long DefaultBudget => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 10 * 9;

    public static string Text(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F1} GiB" : $"{bytes / (double)(1L << 20):F0} MiB";

    /// "800M", "16G", "1.5G", "1073741824": bytes; null when not a size.
    public static long? ParseSize(string text)
    {
        text = text.Trim();
        double scale = 1;
        if (text.Length > 0 && char.ToUpperInvariant(text[^1]) is 'K' or 'M' or 'G' or 'T')
        {
            scale = Math.Pow(1024, "KMGT".IndexOf(char.ToUpperInvariant(text[^1])) + 1);
            text = text[..^1];
        }
        return double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) && v > 0 && double.IsFinite(v * scale) && v * scale < long.MaxValue
            ? (long)(v * scale) : null;
    }
}
