namespace DistTrain.Cnn.Training;

/// Sums over some samples: the loss summed (not averaged), how many were right, how many there were.
/// Sums add up across micro-batches and workers; divide only at the end.
public readonly record struct BatchStats(double LossSum, long Correct, long Samples)
{
    public double MeanLoss => Samples == 0 ? double.NaN : LossSum / Samples;
    public double Accuracy => Samples == 0 ? double.NaN : (double)Correct / Samples;
    public static BatchStats operator +(BatchStats a, BatchStats b) => new(a.LossSum + b.LossSum, a.Correct + b.Correct, a.Samples + b.Samples);
}
