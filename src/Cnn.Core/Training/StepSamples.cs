namespace DistTrain.Cnn.Training;

/// Which samples a step's micro-batches hold: a pure function of (plan, step), the same in every
/// process, so a replica with the data reads them itself and the coordinator can ship them. Keeps
/// the current epoch's order, so a step costs no shuffle and no allocation.
public sealed class StepSamples(TrainingPlan plan, int trainCount)
{
    readonly int[] _order = new int[trainCount];
    int _orderEpoch = -1;

    public int StepsPerEpoch { get; } = EpochOrder.StepsPerEpoch(trainCount, plan.GlobalBatch);

    public int EpochOf(long step) => (int)(step / StepsPerEpoch);

    /// The dataset indices of micro-batches [first, first + count) of global step `step`.
    public ReadOnlyMemory<int> Of(long step, int firstMicroBatch, int microBatches)
    {
        int epoch = EpochOf(step);
        if (epoch != _orderEpoch) { EpochOrder.Fill(plan.Seed, epoch, _order); _orderEpoch = epoch; }
        int batchStart = (int)(step % StepsPerEpoch) * plan.GlobalBatch;
        int from = firstMicroBatch * plan.MicroBatch;
        int to = Math.Min(plan.GlobalBatch, (firstMicroBatch + microBatches) * plan.MicroBatch);
        return _order.AsMemory(batchStart + from, Math.Max(0, to - from));
    }
}
