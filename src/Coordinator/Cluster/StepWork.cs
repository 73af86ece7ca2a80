using DistTrain.Cnn.Data;

namespace DistTrain.Coordinator.Cluster;

/// How the coordinator cuts work among workers: micro-batch runs of a step and pieces of the test
/// split, and the samples it ships to a worker without the dataset.
public static class StepWork
{
    /// Cuts the test split into pieces whose shipped pixels fit one message, and gives each worker a
    /// contiguous run of pieces: (worker, start, count) for every piece, in order.
    public static IReadOnlyList<(int Worker, int Start, int Count)> EvaluationPieces(int testCount, int sampleBytes, int workers, int maxPayloadBytes)
    {
        int perPiece = Math.Max(1, maxPayloadBytes / sampleBytes);
        int pieces = Math.Max(workers, (testCount + perPiece - 1) / perPiece);
        var result = new List<(int, int, int)>(pieces);
        for (int i = 0; i < pieces; i++)
        {
            int start = (int)((long)testCount * i / pieces), end = (int)((long)testCount * (i + 1) / pieces);
            if (end > start) result.Add(((int)((long)i * workers / pieces), start, end - start));
        }
        return result;
    }

    /// Cuts `count` of the global batch's micro-batches among `workers` as evenly as possible,
    /// in ring order: worker r gets a contiguous run starting where r-1's ends.
    public static (int First, int Count)[] Assign(int microBatches, int workers)
    {
        var result = new (int, int)[workers];
        for (int r = 0, first = 0; r < workers; r++)
        {
            int count = microBatches / workers + (r < microBatches % workers ? 1 : 0);
            result[r] = (first, count);
            first += count;
        }
        return result;
    }

    /// The pixels and labels of samples `ids`, in that order, for a worker without the dataset.
    public static (byte[] Pixels, byte[] Labels) Ship(Dataset data, ReadOnlySpan<int> ids)
    {
        var pixels = new byte[ids.Length * data.SampleSize];
        var labels = new byte[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            data.Pixels.Slice(ids[i] * data.SampleSize, data.SampleSize).CopyTo(pixels.AsSpan(i * data.SampleSize));
            labels[i] = data.Label(ids[i]);
        }
        return (pixels, labels);
    }
}
