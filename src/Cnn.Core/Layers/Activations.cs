using System.Runtime.Intrinsics;

namespace DistTrain.Cnn.Layers;

/// Element-wise activation: y = f(x), dx = dy * f'(expressed through y).
public abstract class Activation : Layer
{
    Tensor? _output, _gradInput;

    protected override SampleShape OutputShapeFor(SampleShape input) => input;

    protected abstract float Apply(float x);
    /// The derivative written in terms of the output y = f(x).
    protected abstract float DerivativeFromOutput(float y);

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var output = Tensor.Ensure(ref _output, OutputShape, input.N);
        ApplyAll(input.Span, output.Span);
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, gradOutput.N);
        BackwardAll(_output!.Span, gradOutput.Span, gradInput.Span);
        return gradInput;
    }

    /// y[i] = Apply(x[i]); a subclass may vectorise it, with bitwise the same result.
    protected virtual void ApplyAll(ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++) y[i] = Apply(x[i]);
    }

    /// dx[i] = dy[i] * DerivativeFromOutput(y[i]); a subclass may vectorise it, bitwise the same.
    protected virtual void BackwardAll(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        for (int i = 0; i < dy.Length; i++) dx[i] = dy[i] * DerivativeFromOutput(y[i]);
    }
}

public sealed class ReLU : Activation
{
    protected override float Apply(float x) => x > 0f ? x : 0f;
    protected override float DerivativeFromOutput(float y) => y > 0f ? 1f : 0f;

    // Vectorised with compare-and-select (not Max, whose NaN and -0 rules differ from the scalar
    // form) and a multiply by 1 or 0, so every element is bitwise what the scalar methods give.
    protected override void ApplyAll(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<float>.Count <= x.Length; i += Vector256<float>.Count)
            {
                var v = Vector256.Create(x.Slice(i, Vector256<float>.Count));
                Vector256.ConditionalSelect(Vector256.GreaterThan(v, Vector256<float>.Zero), v, Vector256<float>.Zero).CopyTo(y.Slice(i));
            }
        for (; i < x.Length; i++) y[i] = Apply(x[i]);
    }

    protected override void BackwardAll(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<float>.Count <= dy.Length; i += Vector256<float>.Count)
            {
                var positive = Vector256.GreaterThan(Vector256.Create(y.Slice(i, Vector256<float>.Count)), Vector256<float>.Zero);
                var derivative = Vector256.ConditionalSelect(positive, Vector256<float>.One, Vector256<float>.Zero);
                (Vector256.Create(dy.Slice(i, Vector256<float>.Count)) * derivative).CopyTo(dx.Slice(i));
            }
        for (; i < dy.Length; i++) dx[i] = dy[i] * DerivativeFromOutput(y[i]);
    }
}

public sealed class Sigmoid : Activation
{
    protected override float Apply(float x) => 1f / (1f + MathF.Exp(-x));
    protected override float DerivativeFromOutput(float y) => y * (1f - y);
}

public sealed class Tanh : Activation
{
    protected override float Apply(float x) => MathF.Tanh(x);
    protected override float DerivativeFromOutput(float y) => 1f - y * y;
}

/// Reshapes C x H x W into a vector of C*H*W features (a copy: tensors never alias).
public sealed class Flatten : Layer
{
    Tensor? _output, _gradInput;

    protected override SampleShape OutputShapeFor(SampleShape input) => new(input.Size, 1, 1);

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var output = Tensor.Ensure(ref _output, OutputShape, input.N);
        input.Span.CopyTo(output.Span);
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, gradOutput.N);
        gradOutput.Span.CopyTo(gradInput.Span);
        return gradInput;
    }
}

/// Inverted dropout: in training each element is kept with probability 1 - rate and scaled by
/// 1 / (1 - rate). The mask is a pure function of (seed, epoch, step, sample id, layer, element),
/// so it does not depend on which worker computes the sample.
public sealed class Dropout : Layer
{
    public Dropout(double rate)
    {
        if (!(rate >= 0 && rate < 1)) throw new ArgumentException($"rate must be in [0, 1), got {rate}");
        Rate = rate;
    }

    public double Rate { get; }
    /// Distinguishes the masks of several dropout layers; set by the model (layer position).
    internal int Salt { get; set; }

    Tensor? _output, _gradInput;
    float[] _mask = [];

    protected override SampleShape OutputShapeFor(SampleShape input) => input;

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var output = Tensor.Ensure(ref _output, OutputShape, input.N);
        ReadOnlySpan<float> x = input.Span;
        Span<float> y = output.Span;
        if (!context.Training || Rate == 0)
        {
            x.CopyTo(y);
            if (_mask.Length < x.Length) _mask = new float[x.Length];
            _mask.AsSpan(0, x.Length).Fill(1f);
            return output;
        }
        if (context.SampleIds.Length != input.N)
            throw new InvalidOperationException($"dropout: {input.N} samples but {context.SampleIds.Length} sample ids");
        if (_mask.Length < x.Length) _mask = new float[x.Length];
        float keep = (float)(1 - Rate), scale = 1f / keep;
        int size = InputShape.Size;
        ReadOnlySpan<int> ids = context.SampleIds.Span;
        for (int s = 0; s < input.N; s++)
        {
            ulong sampleKey = DeterministicRandom.Derive(context.Seed, (ulong)context.Epoch, (ulong)context.Step, (ulong)ids[s]);
            ulong layerKey = DeterministicRandom.Derive(sampleKey, (ulong)Salt);
            int e0 = Vector512.IsHardwareAccelerated ? MaskVector(layerKey, keep, scale, x.Slice(s * size, size), y.Slice(s * size, size), _mask.AsSpan(s * size, size))
                : Vector256.IsHardwareAccelerated ? MaskVector256(layerKey, keep, scale, x.Slice(s * size, size), y.Slice(s * size, size), _mask.AsSpan(s * size, size)) : 0;
            for (int e = e0, i = s * size + e0; e < size; e++, i++)
            {
                float m = DeterministicRandom.HashToUnitFloat(layerKey + (ulong)e * Golden) < keep ? scale : 0f;
                _mask[i] = m;
                y[i] = x[i] * m;
            }
        }
        return output;
    }

    const ulong Golden = 0x9E3779B97F4A7C15UL;

    /// The mask of one sample, 16 elements at a time: the same hash (SplitMix64's finaliser on
    /// layerKey + e * Golden), the same 24-bit uniform and the same comparison as the scalar loop,
    /// in 64-bit vector lanes. Returns how many elements it did (a multiple of 16).
    static unsafe int MaskVector(ulong layerKey, float keep, float scale, ReadOnlySpan<float> xs, Span<float> ys, Span<float> masks)
    {
        int done = xs.Length / 16 * 16;
        fixed (float* x = xs)
        fixed (float* y = ys)
        fixed (float* mask = masks)
        {
            var key = Vector512.Create(layerKey) + Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7) * Golden;
            var step = Vector512.Create(unchecked(8 * Golden));
            Vector512<float> vkeep = Vector512.Create(keep), vscale = Vector512.Create(scale), unit = Vector512.Create(1.0f / (1 << 24));
            for (int e = 0; e < done; e += 16)
            {
                var low = Mix(key) >> 40;
                key += step;
                var high = Mix(key) >> 40;
                key += step;
                var u = Vector512.ConvertToSingle(Vector512.Narrow(low, high).AsInt32()) * unit;
                var m = Vector512.ConditionalSelect(Vector512.LessThan(u, vkeep), vscale, Vector512<float>.Zero);
                m.Store(mask + e);
                (Vector512.Load(x + e) * m).Store(y + e);
            }
        }
        return done;
    }

    /// <see cref="MaskVector"/> 8 elements at a time in 256-bit registers (AVX2: the 64-bit
    /// multiplies are emulated, still several times the scalar loop, whose comparison mispredicts).
    static unsafe int MaskVector256(ulong layerKey, float keep, float scale, ReadOnlySpan<float> xs, Span<float> ys, Span<float> masks)
    {
        int done = xs.Length / 8 * 8;
        fixed (float* x = xs)
        fixed (float* y = ys)
        fixed (float* mask = masks)
        {
            var key = Vector256.Create(layerKey) + Vector256.Create(0UL, 1, 2, 3) * Golden;
            var step = Vector256.Create(unchecked(4 * Golden));
            Vector256<float> vkeep = Vector256.Create(keep), vscale = Vector256.Create(scale), unit = Vector256.Create(1.0f / (1 << 24));
            for (int e = 0; e < done; e += 8)
            {
                var low = Mix(key) >> 40;
                key += step;
                var high = Mix(key) >> 40;
                key += step;
                var u = Vector256.ConvertToSingle(Vector256.Narrow(low, high).AsInt32()) * unit;
                var m = Vector256.ConditionalSelect(Vector256.LessThan(u, vkeep), vscale, Vector256<float>.Zero);
                m.Store(mask + e);
                (Vector256.Load(x + e) * m).Store(y + e);
            }
        }
        return done;
    }

    static Vector256<ulong> Mix(Vector256<ulong> z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    static Vector512<ulong> Mix(Vector512<ulong> z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, gradOutput.N);
        ReadOnlySpan<float> dy = gradOutput.Span;
        Span<float> dx = gradInput.Span;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= dy.Length; i += 16) (Vector512.Create(dy.Slice(i, 16)) * Vector512.Create(_mask.AsSpan(i, 16))).CopyTo(dx.Slice(i, 16));
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= dy.Length; i += 8) (Vector256.Create(dy.Slice(i, 8)) * Vector256.Create(_mask.AsSpan(i, 8))).CopyTo(dx.Slice(i, 8));
        for (; i < dy.Length; i++) dx[i] = dy[i] * _mask[i];
        return gradInput;
    }
}
