using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Layers;

/// 2-D convolution with a kernel shared over all positions: the kernel gradient is the sum of the
/// contributions of every position it visited. Computed as im2col + one matrix product per batch.
/// Parameters: weight [out, in, k, k], then bias [out].
public sealed class Conv2D : Layer
{
    public Conv2D(int outChannels, int kernel, int stride = 1, int padding = 0, int? inChannels = null)
    {
        if (outChannels < 1) throw new ArgumentException($"out channels must be >= 1, got {outChannels}");
        if (kernel < 1) throw new ArgumentException($"kernel must be >= 1, got {kernel}");
        if (stride < 1) throw new ArgumentException($"stride must be >= 1, got {stride}");
        if (padding < 0) throw new ArgumentException($"padding must be >= 0, got {padding}");
        OutChannels = outChannels; Kernel = kernel; Stride = stride; Padding = padding; DeclaredInChannels = inChannels;
    }

    public int OutChannels { get; }
    public int Kernel { get; }
    public int Stride { get; }
    public int Padding { get; }
    public int? DeclaredInChannels { get; }
    ConvGeometry Geometry => new(InputShape.C, InputShape.H, InputShape.W, Kernel, Stride, Padding);

    public override int ParameterCount => OutChannels * InputShape.C * Kernel * Kernel + OutChannels;
    public override IEnumerable<(string Suffix, int[] Shape)> ParameterLayout =>
        [("weight", [OutChannels, InputShape.C, Kernel, Kernel]), ("bias", [OutChannels])];

    protected override SampleShape OutputShapeFor(SampleShape input)
    {
        if (DeclaredInChannels is int c && c != input.C)
            throw new ArgumentException($"declared {c} input channels, but its input has {input.C}");
        if (input.H + 2 * Padding < Kernel || input.W + 2 * Padding < Kernel)
            throw new ArgumentException($"kernel {Kernel} with padding {Padding} does not fit input {input}");
        var g = new ConvGeometry(input.C, input.H, input.W, Kernel, Stride, Padding);
        return new SampleShape(OutChannels, g.OutHeight, g.OutWidth);
    }

    public override void Initialize(ref DeterministicRandom rng)
    {
        int patch = InputShape.C * Kernel * Kernel;
        InitWeights(Parameters[..(OutChannels * patch)], patch, OutChannels * Kernel * Kernel, Init, ref rng);
        Parameters[(OutChannels * patch)..].Clear();
    }

    Tensor? _input, _output, _gradInput;
    float[] _col = [], _channelMajor = [], _gradCol = [];

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var g = Geometry;
        int n = input.N, positions = g.Positions, columns = n * positions, patch = g.PatchSize;
        _input = input;
        EnsureScratch(columns, patch);
        var output = Tensor.Ensure(ref _output, OutputShape, n);

        Im2Col.Unfold(input.Memory, n, g, _col.AsMemory(0, patch * columns));
        // out[co, (n,p)] = W[co, :] . col[:, (n,p)]
        int weights = OutChannels * patch;
        Gemm.NN(ParameterMemory[..weights], patch, 1, _col.AsMemory(0, patch * columns),
                _channelMajor.AsMemory(0, OutChannels * columns), OutChannels, columns, patch, accumulate: false);

        // [co, n, p] -> [n, co, p], adding the bias.
        ReadOnlySpan<float> bias = Parameters[weights..];
        Span<float> dst = output.Span;
        ReadOnlySpan<float> src = _channelMajor.AsSpan(0, OutChannels * columns);
        for (int s = 0; s < n; s++)
            for (int co = 0; co < OutChannels; co++)
                Elementwise.AddScalar(src.Slice(co * columns + s * positions, positions), bias[co],
                                      dst.Slice((s * OutChannels + co) * positions, positions));
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var g = Geometry;
        int n = gradOutput.N, positions = g.Positions, columns = n * positions, patch = g.PatchSize;
        int weights = OutChannels * patch;

        // [n, co, p] -> [co, n, p]; the bias gradient sums each channel's row over batch and positions.
        ReadOnlySpan<float> src = gradOutput.Span;
        Span<float> gradChannelMajor = _channelMajor.AsSpan(0, OutChannels * columns);
        Span<float> gradBias = Gradients[weights..];
        for (int co = 0; co < OutChannels; co++)
        {
            for (int s = 0; s < n; s++)
                src.Slice((s * OutChannels + co) * positions, positions).CopyTo(gradChannelMajor.Slice(co * columns + s * positions, positions));
            gradBias[co] += Elementwise.Sum(gradChannelMajor.Slice(co * columns, columns));
        }

        // dW[co, (c,ky,kx)] += sum over (n,p) of gradOut[co,(n,p)] * col[(c,ky,kx),(n,p)]
        Gemm.NT(_channelMajor.AsMemory(0, OutChannels * columns), _col.AsMemory(0, patch * columns),
                GradientMemory[..weights], OutChannels, patch, columns, accumulate: true);

        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, n);
        if (!ComputeInputGradient) return gradInput;
        // dCol = W^T gradOut, then fold the columns back onto the input planes.
        Gemm.NN(ParameterMemory[..weights], 1, patch, _channelMajor.AsMemory(0, OutChannels * columns),
                _gradCol.AsMemory(0, patch * columns), patch, columns, OutChannels, accumulate: false);
        Im2Col.Fold(_gradCol.AsMemory(0, patch * columns), n, g, gradInput.Memory);
        return gradInput;
    }

    void EnsureScratch(int columns, int patch)
    {
        if (_col.Length < patch * columns) { _col = new float[patch * columns]; _gradCol = new float[patch * columns]; }
        if (_channelMajor.Length < OutChannels * columns) _channelMajor = new float[OutChannels * columns];
    }
}
