namespace DistTrain.Cnn.Layers;

/// Batch normalisation over the channels of C x H x W samples (2-D after a convolution; 1-D is the
/// same with H = W = 1, after a dense layer). Training normalises with the statistics of the
/// micro-batch being computed: a micro-batch has a fixed size and fixed members, so a step's result
/// does not depend on how micro-batches are spread over workers or threads. Evaluation normalises
/// with the running mean and variance.
///
/// Parameters: weight (gamma) [C], bias (beta) [C], then the running mean [C] and running variance
/// [C] (PyTorch's names), which are statistics, not trained: they ride in the parameter vector so
/// that checkpoints, state transfer, hashing and the undo of a step carry them like everything else.
/// In training, the forward pass writes each micro-batch's contribution into their gradient slots
/// (N times its mean, N times its unbiased variance, N the micro-batch's samples), the replica sums
/// those exactly with the gradients across every micro-batch of the global batch B, and the update
/// sets running = (1 - Momentum) * running + Momentum * sum / B on every replica alike
/// (<see cref="UpdateStatistics"/>; the optimizer leaves these elements alone).
///
/// Sums over a channel are taken in double in a fixed order, so results do not depend on the CPU.
public sealed class BatchNorm : Layer
{
    public const double Momentum = 0.1;
    public const double Epsilon = 1e-5;

    int C => InputShape.C;
    int Plane => InputShape.H * InputShape.W;

    public override int ParameterCount => 4 * C;
    public override IEnumerable<(int Offset, int Length)> StatisticRanges => [(2 * C, 2 * C)];
    public override IEnumerable<(string Suffix, int[] Shape)> ParameterLayout =>
        [("weight", [C]), ("bias", [C]), ("running_mean", [C]), ("running_var", [C])];

    protected override SampleShape OutputShapeFor(SampleShape input) => input;

    public override void Initialize(ref DeterministicRandom rng)
    {
        var p = Parameters;
        p[..C].Fill(1f);                 // gamma
        p[C..(2 * C)].Clear();           // beta
        p[(2 * C)..(3 * C)].Clear();     // running mean
        p[(3 * C)..].Fill(1f);           // running variance
    }

    Tensor? _output, _gradInput;
    /// The normalised input of the last training forward pass, and its per-channel 1 / sqrt(var + eps).
    Tensor? _normalized;
    float[] _invStd = [];
    bool _trained;

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        int n = input.N, c = C, plane = Plane;
        var output = Tensor.Ensure(ref _output, OutputShape, n);
        ReadOnlySpan<float> x = input.Span, p = Parameters;
        Span<float> y = output.Span;
        _trained = context.Training;
        if (!context.Training)
        {
            for (int ch = 0; ch < c; ch++)
            {
                float scale = (float)(p[ch] / Math.Sqrt(p[3 * c + ch] + Epsilon)), mean = p[2 * c + ch], shift = p[c + ch];
                for (int s = 0; s < n; s++)
                {
                    int at = (s * c + ch) * plane;
                    for (int i = 0; i < plane; i++) y[at + i] = (x[at + i] - mean) * scale + shift;
                }
            }
            return output;
        }
        long count = (long)n * plane;
        if (count < 2) throw new ArgumentException($"{Name}: batch normalisation in training needs at least 2 values per channel, a micro-batch gives {count}; use a larger --micro-batch");
        var normalized = Tensor.Ensure(ref _normalized, InputShape, n);
        Span<float> xhat = normalized.Span;
        if (_invStd.Length != c) _invStd = new float[c];
        Span<float> g = Gradients;
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0;
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                for (int i = 0; i < plane; i++) sum += x[at + i];
            }
            double mean = sum / count, squares = 0;
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                for (int i = 0; i < plane; i++) { double d = x[at + i] - mean; squares += d * d; }
            }
            double variance = squares / count;
            float invStd = (float)(1 / Math.Sqrt(variance + Epsilon)), meanF = (float)mean, gamma = p[ch], beta = p[c + ch];
            _invStd[ch] = invStd;
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                for (int i = 0; i < plane; i++)
                {
                    float h = (x[at + i] - meanF) * invStd;
                    xhat[at + i] = h;
                    y[at + i] = gamma * h + beta;
                }
            }
            // This micro-batch's part of the running statistics' update (summed exactly with the gradients).
            g[2 * c + ch] += (float)(n * mean);
            g[3 * c + ch] += (float)(n * (squares / (count - 1)));
        }
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        if (!_trained || _normalized is null) throw new InvalidOperationException($"{Name}: Backward needs a training forward pass");
        int n = gradOutput.N, c = C, plane = Plane;
        long count = (long)n * plane;
        ReadOnlySpan<float> dy = gradOutput.Span, xhat = _normalized.Span, p = Parameters;
        Span<float> g = Gradients;
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, n);
        Span<float> dx = gradInput.Span;
        for (int ch = 0; ch < c; ch++)
        {
            double sumDy = 0, sumDyXhat = 0;
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                for (int i = 0; i < plane; i++) { sumDy += dy[at + i]; sumDyXhat += (double)dy[at + i] * xhat[at + i]; }
            }
            g[ch] += (float)sumDyXhat;    // d gamma
            g[c + ch] += (float)sumDy;    // d beta
            if (!ComputeInputGradient) continue;
            // dx = gamma * invStd * (dy - mean(dy) - xhat * mean(dy * xhat))
            float scale = p[ch] * _invStd[ch], meanDy = (float)(sumDy / count), meanDyXhat = (float)(sumDyXhat / count);
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                for (int i = 0; i < plane; i++) dx[at + i] = scale * (dy[at + i] - meanDy - xhat[at + i] * meanDyXhat);
            }
        }
        return gradInput;
    }

    /// The running statistics' update from the exact sum of a global batch's contributions:
    /// running = (1 - Momentum) * running + Momentum * sum / globalBatch, element by element.
    public static void UpdateStatistics(ReadOnlySpan<float> running, Span<float> updated, ReadOnlySpan<float> sums, int globalBatch)
    {
        for (int i = 0; i < running.Length; i++)
            updated[i] = (float)((1 - Momentum) * running[i] + Momentum * sums[i] / globalBatch);
    }
}

/// The mean of each channel over its H x W positions: C x H x W -> C x 1 x 1 (ResNet's head).
public sealed class GlobalAvgPool : Layer
{
    protected override SampleShape OutputShapeFor(SampleShape input) => new(input.C, 1, 1);

    Tensor? _output, _gradInput;

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        int n = input.N, c = InputShape.C, plane = InputShape.H * InputShape.W;
        var output = Tensor.Ensure(ref _output, OutputShape, n);
        ReadOnlySpan<float> x = input.Span;
        Span<float> y = output.Span;
        for (int k = 0; k < n * c; k++)
        {
            double sum = 0;
            foreach (float v in x.Slice(k * plane, plane)) sum += v;
            y[k] = (float)(sum / plane);
        }
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        int n = gradOutput.N, c = InputShape.C, plane = InputShape.H * InputShape.W;
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, n);
        ReadOnlySpan<float> dy = gradOutput.Span;
        Span<float> dx = gradInput.Span;
        for (int k = 0; k < n * c; k++) dx.Slice(k * plane, plane).Fill(dy[k] / plane);
        return gradInput;
    }
}
