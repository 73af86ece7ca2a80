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
            Forward2x2(x, y, _argmax, planes, input.H, input.W, oh, ow);
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

    /// The common 2x2 window with stride 2, unrolled: the same comparisons in the same order as the
    /// general loop (strict >, row by row), so the same maxima and the same first argmax.
    static unsafe void Forward2x2(ReadOnlySpan<float> xSpan, Span<float> ySpan, Span<int> argSpan, int planes, int h, int w, int oh, int ow)
    {
        fixed (float* x = xSpan)
        fixed (float* y = ySpan)
        fixed (int* arg = argSpan)
        {
            int o = 0;
            for (int p = 0; p < planes; p++)
            {
                int inBase = p * h * w;
                for (int oy = 0; oy < oh; oy++)
                {
                    int row = inBase + 2 * oy * w;
                    for (int ox = 0; ox < ow; ox++, o++)
                    {
                        // Branch-free selects: the winner of each window is unpredictable.
                        int i0 = row + 2 * ox, i2 = i0 + w;
                        float v0 = x[i0], v1 = x[i0 + 1], v2 = x[i2], v3 = x[i2 + 1];
                        bool c1 = v1 > v0;
                        float max = c1 ? v1 : v0;
                        int best = c1 ? i0 + 1 : i0;
                        bool c2 = v2 > max;
                        max = c2 ? v2 : max;
                        best = c2 ? i2 : best;
                        bool c3 = v3 > max;
                        y[o] = c3 ? v3 : max;
                        arg[o] = c3 ? i2 + 1 : best;
                    }
                }
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
