using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DistTrain.Cnn.Layers;

/// Pooling over size x size windows moved by stride (default: size, non-overlapping).
public abstract class Pool2D : Layer
{
    protected Pool2D(int size, int? stride)
    {
        if (size < 1) throw new ArgumentException($"size must be >= 1, got {size}");
        Size = size; Stride = stride ?? size;
        if (Stride < 1) throw new ArgumentException($"stride must be >= 1, got {Stride}");
    }

    public int Size { get; }
    public int Stride { get; }

    protected override SampleShape OutputShapeFor(SampleShape input)
    {
        if (input.H < Size || input.W < Size) throw new ArgumentException($"window {Size} does not fit input {input}");
        return new SampleShape(input.C, (input.H - Size) / Stride + 1, (input.W - Size) / Stride + 1);
    }
}

/// Max pooling. The gradient goes to the first maximum of each window.
public sealed class MaxPool2D(int size, int? stride = null) : Pool2D(size, stride)
{
    Tensor? _output, _gradInput;
    int[] _argmax = [];

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var output = Tensor.Ensure(ref _output, OutputShape, input.N);
        int planes = input.N * input.C, inPlane = input.H * input.W, oh = OutputShape.H, ow = OutputShape.W;
        if (_argmax.Length < output.Length) _argmax = new int[output.Length];
        ReadOnlySpan<float> x = input.Span;
        Span<float> y = output.Span;
        if (Size == 2 && Stride == 2)
        {
            Forward2x2(x, y, WindowStarts(planes, input.H, input.W, oh, ow), _argmax, input.W);
            return output;
        }
        for (int p = 0; p < planes; p++)
        {
            int inBase = p * inPlane, o = p * oh * ow;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, o++)
                {
                    int best = inBase + oy * Stride * input.W + ox * Stride;
                    float max = x[best];
                    for (int ky = 0; ky < Size; ky++)
                    {
                        int rowStart = inBase + (oy * Stride + ky) * input.W + ox * Stride;
                        for (int kx = 0; kx < Size; kx++)
                            if (x[rowStart + kx] > max) { max = x[rowStart + kx]; best = rowStart + kx; }
                    }
                    y[o] = max;
                    _argmax[o] = best;
                }
        }
        return output;
    }

    int[] _starts = [];
    int _startsCount = -1;

    /// The input index of each 2x2 window's top-left element; made once per batch size.
    int[] WindowStarts(int planes, int h, int w, int oh, int ow)
    {
        int count = planes * oh * ow;
        if (_startsCount == count) return _starts;
        if (_starts.Length < count) _starts = new int[count];
        for (int p = 0, o = 0; p < planes; p++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, o++) _starts[o] = p * h * w + 2 * oy * w + 2 * ox;
        _startsCount = count;
        return _starts;
    }

    /// 2x2 windows, stride 2, eight windows at a time where the CPU has AVX2 gathers: gathers the
    /// four elements of each window and makes the comparisons of the scalar loop below (strict >,
    /// in the same order) lane by lane, so the maxima and the first argmax are the same bits.
    static unsafe void Forward2x2(ReadOnlySpan<float> xSpan, Span<float> ySpan, ReadOnlySpan<int> startSpan, Span<int> argSpan, int w)
    {
        int count = ySpan.Length;
        fixed (float* x = xSpan)
        fixed (float* y = ySpan)
        fixed (int* start = startSpan)
        fixed (int* arg = argSpan)
        {
            var right = Vector256.Create(1);
            var down = Vector256.Create(w);
            var diagonal = Vector256.Create(w + 1);
            int o = 0;
            if (Avx2.IsSupported)
                for (; o + 8 <= count; o += 8)
                {
                    var i0 = Vector256.Load(start + o);
                    Vector256<int> i1 = i0 + right, i2 = i0 + down, i3 = i0 + diagonal;
                    var v0 = Avx2.GatherVector256(x, i0, 4);
                    var v1 = Avx2.GatherVector256(x, i1, 4);
                    var v2 = Avx2.GatherVector256(x, i2, 4);
                    var v3 = Avx2.GatherVector256(x, i3, 4);
                    var c = Vector256.GreaterThan(v1, v0);
                    var max = Vector256.ConditionalSelect(c, v1, v0);
                    var best = Vector256.ConditionalSelect(c.AsInt32(), i1, i0);
                    c = Vector256.GreaterThan(v2, max);
                    max = Vector256.ConditionalSelect(c, v2, max);
                    best = Vector256.ConditionalSelect(c.AsInt32(), i2, best);
                    c = Vector256.GreaterThan(v3, max);
                    Vector256.ConditionalSelect(c, v3, max).Store(y + o);
                    Vector256.ConditionalSelect(c.AsInt32(), i3, best).Store(arg + o);
                }
            for (; o < count; o++)
            {
                int i0 = start[o], best = i0;
                float max = x[i0];
                if (x[i0 + 1] > max) { max = x[i0 + 1]; best = i0 + 1; }
                if (x[i0 + w] > max) { max = x[i0 + w]; best = i0 + w; }
                if (x[i0 + w + 1] > max) { max = x[i0 + w + 1]; best = i0 + w + 1; }
                y[o] = max;
                arg[o] = best;
            }
        }
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, gradOutput.N);
        Span<float> dx = gradInput.Span;
        dx.Clear();
        ReadOnlySpan<float> dy = gradOutput.Span;
        for (int o = 0; o < dy.Length; o++) dx[_argmax[o]] += dy[o];
        return gradInput;
    }
}

/// Average pooling: each output is the mean of its window.
public sealed class AvgPool2D(int size, int? stride = null) : Pool2D(size, stride)
{
    Tensor? _output, _gradInput;

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var output = Tensor.Ensure(ref _output, OutputShape, input.N);
        int planes = input.N * input.C, inPlane = input.H * input.W, oh = OutputShape.H, ow = OutputShape.W;
        float scale = 1f / (Size * Size);
        ReadOnlySpan<float> x = input.Span;
        Span<float> y = output.Span;
        for (int p = 0; p < planes; p++)
        {
            int inBase = p * inPlane, o = p * oh * ow;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, o++)
                {
                    float sum = 0;
                    for (int ky = 0; ky < Size; ky++)
                    {
                        int rowStart = inBase + (oy * Stride + ky) * input.W + ox * Stride;
                        for (int kx = 0; kx < Size; kx++) sum += x[rowStart + kx];
                    }
                    y[o] = sum * scale;
                }
        }
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, gradOutput.N);
        int planes = gradOutput.N * InputShape.C, inPlane = InputShape.H * InputShape.W, oh = OutputShape.H, ow = OutputShape.W;
        float scale = 1f / (Size * Size);
        Span<float> dx = gradInput.Span;
        dx.Clear();
        ReadOnlySpan<float> dy = gradOutput.Span;
        for (int p = 0; p < planes; p++)
        {
            int inBase = p * inPlane, o = p * oh * ow;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, o++)
                {
                    float g = dy[o] * scale;
                    for (int ky = 0; ky < Size; ky++)
                    {
                        int rowStart = inBase + (oy * Stride + ky) * InputShape.W + ox * Stride;
                        for (int kx = 0; kx < Size; kx++) dx[rowStart + kx] += g;
                    }
                }
        }
        return gradInput;
    }
}
