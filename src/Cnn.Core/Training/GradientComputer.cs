using DistTrain.Cnn.Data;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Training;

/// Runs forward and backward over given samples of a dataset and ADDS their gradient into the
/// model's gradient vector; training batches are augmented with `augmentation` (none by default).
/// Input and loss buffers are reused, so a fixed batch size allocates nothing.
public sealed class GradientComputer(Model model, ILoss loss, Augmentation? augmentation = null)
{
    readonly Tensor _input = new(model.InputShape, 1);
    readonly Tensor _gradLogits = new(model.OutputShape, 1);
    int[] _labels = [];

    public Model Model => model;
    public ILoss Loss => loss;

    /// Adds gradScale * d(sum of losses)/d(parameters) over the samples into Model.Gradients;
    /// `layerDone` as in <see cref="Model.Backward"/>.
    public BatchStats Accumulate(Dataset data, ReadOnlyMemory<int> sampleIds, in BatchContext context, float gradScale, Action<Layer>? layerDone = null)
    {
        var logits = ForwardBatch(data, sampleIds, context);
        double lossSum = loss.Compute(logits, _labels.AsSpan(0, sampleIds.Length), _gradLogits, gradScale, out int correct);
        model.Backward(_gradLogits, layerDone);
        return new BatchStats(lossSum, correct, sampleIds.Length);
    }

    /// Loss and accuracy without touching gradients (evaluation).
    public BatchStats Evaluate(Dataset data, ReadOnlyMemory<int> sampleIds)
    {
        var logits = ForwardBatch(data, sampleIds, BatchContext.Inference);
        double lossSum = loss.Compute(logits, _labels.AsSpan(0, sampleIds.Length), _gradLogits, 0f, out int correct);
        return new BatchStats(lossSum, correct, sampleIds.Length);
    }

    /// The model's outputs (logits) for samples of `data`, in inference mode: N x outputs, row-major,
    /// valid until the next call.
    public ReadOnlySpan<float> Logits(Dataset data, ReadOnlyMemory<int> sampleIds) => ForwardBatch(data, sampleIds, BatchContext.Inference).Span;

    Tensor ForwardBatch(Dataset data, ReadOnlyMemory<int> sampleIds, in BatchContext context)
    {
        int n = sampleIds.Length;
        if (data.SampleSize != model.InputShape.Size)
            throw new ArgumentException($"{data.Name}: samples of {data.ShapeText} do not fit model {model.Name} (input {model.InputShape})");
        _input.Resize(n);
        if (_labels.Length < n) _labels = new int[n];
        if (context.Training && augmentation is { IsNone: false } a)
            data.Gather(sampleIds.Span, context.SampleIds.Span, context.Seed, context.Epoch, a, _input.Span, _labels.AsSpan(0, n));
        else data.Gather(sampleIds.Span, _input.Span, _labels.AsSpan(0, n));
        return model.Forward(_input, context);
    }
}
