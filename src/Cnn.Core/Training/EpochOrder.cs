namespace DistTrain.Cnn.Training;

/// The order in which an epoch visits the training set: a Fisher-Yates shuffle seeded by
/// (seed, epoch) alone, so every process derives the same global batches.
public static class EpochOrder
{
    public static void Fill(ulong seed, int epoch, Span<int> order)
    {
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var rng = new DeterministicRandom(DeterministicRandom.Derive(seed, 0x5EED, (ulong)epoch));
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
    }

    /// Full batches per epoch; the last partial batch is dropped so every step has the same size.
    public static int StepsPerEpoch(int samples, int globalBatch) => samples / globalBatch;
}
