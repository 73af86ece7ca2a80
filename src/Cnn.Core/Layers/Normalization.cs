using System.Runtime.Intrinsics;

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
/// Sums over a channel are taken in double in one fixed order (<see cref="ChannelSums"/>), so results do not depend on the CPU.
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
                    Affine(x.Slice(at, plane), mean, scale, shift, y.Slice(at, plane));
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
            double mean = ChannelSums.Sum(x, ch * plane, c * plane, n, plane) / count;
            double squares = ChannelSums.SquaredDeviations(x, ch * plane, c * plane, n, plane, mean);
            double variance = squares / count;
            float invStd = (float)(1 / Math.Sqrt(variance + Epsilon)), meanF = (float)mean, gamma = p[ch], beta = p[c + ch];
            _invStd[ch] = invStd;
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                Normalize(x.Slice(at, plane), meanF, invStd, xhat.Slice(at, plane));
                Scale(xhat.Slice(at, plane), gamma, beta, y.Slice(at, plane));
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
            double sumDy = ChannelSums.Sum(dy, ch * plane, c * plane, n, plane);
            double sumDyXhat = ChannelSums.Products(dy, xhat, ch * plane, c * plane, n, plane);
            g[ch] += (float)sumDyXhat;    // d gamma
            g[c + ch] += (float)sumDy;    // d beta
            if (!ComputeInputGradient) continue;
            // dx = gamma * invStd * (dy - mean(dy) - xhat * mean(dy * xhat))
            float scale = p[ch] * _invStd[ch], meanDy = (float)(sumDy / count), meanDyXhat = (float)(sumDyXhat / count);
            for (int s = 0; s < n; s++)
            {
                int at = (s * c + ch) * plane;
                InputGradient(dy.Slice(at, plane), xhat.Slice(at, plane), meanDy, meanDyXhat, scale, dx.Slice(at, plane));
            }
        }
        return gradInput;
    }

    // Element-wise parts, 8 at a time: each element gets the scalar tail's operations (a multiply
    // and an add are never fused), so the bits do not depend on the vector width.

    /// y = (x - a) * b + c
    static void Affine(ReadOnlySpan<float> x, float a, float b, float c, Span<float> y)
    {
        int i = 0;
        Vector256<float> va = Vector256.Create(a), vb = Vector256.Create(b), vc = Vector256.Create(c);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= x.Length; i += 8) ((Vector256.Create(x.Slice(i, 8)) - va) * vb + vc).CopyTo(y.Slice(i, 8));
        for (; i < x.Length; i++) y[i] = (x[i] - a) * b + c;
    }

    /// y = (x - a) * b
    static void Normalize(ReadOnlySpan<float> x, float a, float b, Span<float> y)
    {
        int i = 0;
        Vector256<float> va = Vector256.Create(a), vb = Vector256.Create(b);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= x.Length; i += 8) ((Vector256.Create(x.Slice(i, 8)) - va) * vb).CopyTo(y.Slice(i, 8));
        for (; i < x.Length; i++) y[i] = (x[i] - a) * b;
    }

    /// y = x * b + c
    static void Scale(ReadOnlySpan<float> x, float b, float c, Span<float> y)
    {
        int i = 0;
        Vector256<float> vb = Vector256.Create(b), vc = Vector256.Create(c);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= x.Length; i += 8) (Vector256.Create(x.Slice(i, 8)) * vb + vc).CopyTo(y.Slice(i, 8));
        for (; i < x.Length; i++) y[i] = x[i] * b + c;
    }

    /// dx = scale * (dy - meanDy - xhat * meanDyXhat)
    static void InputGradient(ReadOnlySpan<float> dy, ReadOnlySpan<float> xhat, float meanDy, float meanDyXhat, float scale, Span<float> dx)
    {
        int i = 0;
        Vector256<float> vm = Vector256.Create(meanDy), vmx = Vector256.Create(meanDyXhat), vs = Vector256.Create(scale);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= dy.Length; i += 8)
                (vs * (Vector256.Create(dy.Slice(i, 8)) - vm - Vector256.Create(xhat.Slice(i, 8)) * vmx)).CopyTo(dx.Slice(i, 8));
        for (; i < dy.Length; i++) dx[i] = scale * (dy[i] - meanDy - xhat[i] * meanDyXhat);
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

/// Sums over one channel of n samples (planes of `plane` values, `step` apart from `first`) in
/// double, in one order on every CPU: within each plane, element i of every whole block of 8 goes
/// to lane i mod 8 and the rest of the plane to a scalar tail; at the end lane j and j + 4 are
/// added, then ((l0 + l1) + (l2 + l3)), then the tail. Written with Vector256 of double, which the
/// runtime computes lane by lane with the same IEEE operations where the CPU has no 256-bit
/// vectors, so the bits are the same everywhere (only slower there). Products of two floats are
/// exact in double.
static class ChannelSums
{
    public static double Sum(ReadOnlySpan<float> x, int first, int step, int n, int plane) =>
        Run<Plain>(x, x, first, step, n, plane, 0);

    public static double SquaredDeviations(ReadOnlySpan<float> x, int first, int step, int n, int plane, double mean) =>
        Run<Squares>(x, x, first, step, n, plane, mean);

    public static double Products(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int first, int step, int n, int plane) =>
        Run<Product>(a, b, first, step, n, plane, 0);

    interface ITerm
    {
        static abstract Vector256<double> Of(Vector256<double> a, Vector256<double> b, Vector256<double> mean);
        static abstract double Of(double a, double b, double mean);
    }
    struct Plain : ITerm
    {
        public static Vector256<double> Of(Vector256<double> a, Vector256<double> b, Vector256<double> mean) => a;
        public static double Of(double a, double b, double mean) => a;
    }
    struct Squares : ITerm
    {
        public static Vector256<double> Of(Vector256<double> a, Vector256<double> b, Vector256<double> mean) { var d = a - mean; return d * d; }
        public static double Of(double a, double b, double mean) { double d = a - mean; return d * d; }
    }
    struct Product : ITerm
    {
        public static Vector256<double> Of(Vector256<double> a, Vector256<double> b, Vector256<double> mean) => a * b;
        public static double Of(double a, double b, double mean) => a * b;
    }

    static double Run<T>(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int first, int step, int n, int plane, double mean) where T : ITerm
    {
        Vector256<double> lo = Vector256<double>.Zero, hi = Vector256<double>.Zero, m = Vector256.Create(mean);
        double tail = 0;
        for (int s = 0; s < n; s++)
        {
            int at = first + s * step, i = 0;
            for (; i + 8 <= plane; i += 8)
            {
                var (a0, a1) = Vector256.Widen(Vector256.Create(a.Slice(at + i, 8)));
                var (b0, b1) = Vector256.Widen(Vector256.Create(b.Slice(at + i, 8)));
                lo += T.Of(a0, b0, m);
                hi += T.Of(a1, b1, m);
            }
            for (; i < plane; i++) tail += T.Of(a[at + i], b[at + i], mean);
        }
        var lanes = lo + hi;
        return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + tail;
    }
}
