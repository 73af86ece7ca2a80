using DistTrain.Cnn.Training;

namespace DistTrain.Worker;

/// Which samples a step's micro-batches hold: a pure function of (plan, step), the same in every
/// process, so a worker with the data reads them itself and the coordinator can ship them.
public sealed class StepWork(TrainingPlan plan, int trainCount)
{
    readonly int[] _order = new int[trainCount];
    int _orderEpoch = -1;

    public int StepsPerEpoch { get; } = EpochOrder.StepsPerEpoch(trainCount, plan.GlobalBatch);

    public int EpochOf(long step) => (int)(step / StepsPerEpoch);

    /// The dataset indices of micro-batches [first, first + count) of global step `step`.
    public ReadOnlyMemory<int> Samples(long step, int firstMicroBatch, int microBatches)
    {
        int epoch = EpochOf(step);
        if (epoch != _orderEpoch) { EpochOrder.Fill(plan.Seed, epoch, _order); _orderEpoch = epoch; }
        int batchStart = (int)(step % StepsPerEpoch) * plan.GlobalBatch;
        int from = firstMicroBatch * plan.MicroBatch;
        int to = Math.Min(plan.GlobalBatch, (firstMicroBatch + microBatches) * plan.MicroBatch);
        return _order.AsMemory(batchStart + from, Math.Max(0, to - from));
    }

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
}
