using DistTrain.Cnn.Data;

namespace DistTrain.Cnn.Training;

public static class Evaluation
{
    /// Samples per forward pass. The test loss is summed batch by batch, so its last bits depend on
    /// this; the parameters do not.
    public const int Batch = 500;

    /// Loss and accuracy of the model over samples [start, end) of a dataset, in batches.
    public static BatchStats Run(GradientComputer computer, Dataset data, int batch = Batch, int start = 0, int? end = null)
    {
        int stop = end ?? data.Count;
        var ids = new int[batch];
        var total = new BatchStats();
        for (int first = start; first < stop; first += batch)
        {
            int n = Math.Min(batch, stop - first);
            for (int i = 0; i < n; i++) ids[i] = first + i;
            total += computer.Evaluate(data, ids.AsMemory(0, n));
        }
        return total;
    }
}
