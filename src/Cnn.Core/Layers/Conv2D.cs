using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Layers;

/// 2-D convolution with a kernel shared over all positions: the kernel gradient is the sum of the
/// contributions of every position it visited. Computed as im2col + matrix products, one sample at
/// a time when a sample's positions are a multiple of 8: its columns (a few hundred KB) then stay
/// in the core's cache from the unfold to the product, instead of a batch's (megabytes) streaming
/// through memory, and the weight gradient's dot products and the bias sums carry their 8 lanes
/// from one sample to the next (<see cref="Gemm.NTLanes"/>), so every element gets the chain of
/// operations of one product over the whole batch (the batch path, used for other geometries).
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
    float[] _col = [], _channelMajor = [], _gradCol = [], _lanes = [], _biasLanes = [];

    /// Which way the products are cut: by sample where the lanes allow it, else over the batch.
    internal ConvSchedule Schedule { get; set; } = ConvSchedule.Auto;

    bool BySample(ConvGeometry g) => Schedule switch
    {
        ConvSchedule.Batch => false,
        ConvSchedule.BySample when g.Positions % 8 != 0 => throw new InvalidOperationException($"{g.Positions} positions: not a multiple of 8, no per-sample schedule"),
        _ => g.Positions % 8 == 0,
    };

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var g = Geometry;
        int n = input.N, positions = g.Positions, columns = n * positions, patch = g.PatchSize;
        _input = input;
        var output = Tensor.Ensure(ref _output, OutputShape, n);
        if (BySample(g)) return ForwardBySample(input, output, g);
        EnsureScratch(columns, patch);

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

    /// out[s][co, p] = W[co, :] . col_s[:, p] + bias[co], written straight into the sample's output.
    Tensor ForwardBySample(Tensor input, Tensor output, ConvGeometry g)
    {
        int positions = g.Positions, patch = g.PatchSize, weights = OutChannels * patch;
        int inSize = InputShape.Size, outSize = OutChannels * positions;
        EnsureScratch(positions, patch);
        var col = _col.AsMemory(0, patch * positions);
        ReadOnlySpan<float> bias = Parameters[weights..];
        for (int s = 0; s < input.N; s++)
        {
            Im2Col.Unfold(input.Memory.Slice(s * inSize, inSize), 1, g, col);
            var dst = output.Memory.Slice(s * outSize, outSize);
            Gemm.NN(ParameterMemory[..weights], patch, 1, col, dst, OutChannels, positions, patch, accumulate: false);
            for (int co = 0; co < OutChannels; co++)
            {
                var row = dst.Span.Slice(co * positions, positions);
                Elementwise.AddScalar(row, bias[co], row);
            }
        }
        return output;
    }

    /// The batch path's sums, one sample at a time: the bias and weight gradients' lanes carried
    /// across samples (the unfold redone from the kept input, cheaper than keeping the batch's
    /// columns), each sample's input gradient folded from its own columns.
    Tensor BackwardBySample(Tensor gradOutput, ConvGeometry g)
    {
        int n = gradOutput.N, positions = g.Positions, patch = g.PatchSize, weights = OutChannels * patch;
        int inSize = InputShape.Size, outSize = OutChannels * positions;
        EnsureScratch(positions, patch);
        if (_lanes.Length < Gemm.NTLaneCount(OutChannels, patch)) _lanes = new float[Gemm.NTLaneCount(OutChannels, patch)];
        if (_biasLanes.Length < 8 * OutChannels) _biasLanes = new float[8 * OutChannels];
        Array.Clear(_biasLanes);
        var col = _col.AsMemory(0, patch * positions);
        var gradCol = _gradCol.AsMemory(0, patch * positions);
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, n);
        var input = _input ?? throw new InvalidOperationException("backward before forward");
        for (int s = 0; s < n; s++)
        {
            var gradOut = gradOutput.Memory.Slice(s * outSize, outSize);
            for (int co = 0; co < OutChannels; co++)
                Elementwise.AddToLanes(gradOut.Span.Slice(co * positions, positions), _biasLanes.AsSpan(8 * co, 8));
            Im2Col.Unfold(input.Memory.Slice(s * inSize, inSize), 1, g, col);
            Gemm.NTLanes(gradOut, positions, col, positions, OutChannels, patch, positions, _lanes, first: s == 0);
            if (!ComputeInputGradient) continue;
            Gemm.NN(ParameterMemory[..weights], 1, patch, gradOut, gradCol, patch, positions, OutChannels, accumulate: false);
            Im2Col.Fold(gradCol, 1, g, gradInput.Memory.Slice(s * inSize, inSize));
        }
        Span<float> gradBias = Gradients[weights..];
        for (int co = 0; co < OutChannels; co++) gradBias[co] += Elementwise.SumOfLanes(_biasLanes.AsSpan(8 * co, 8));
        if (n > 0) Gemm.NTLanesFinish(_lanes, Gradients[..weights], OutChannels, patch, accumulate: true);
        return gradInput;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var g = Geometry;
        if (BySample(g)) return BackwardBySample(gradOutput, g);
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

/// How <see cref="Conv2D"/> cuts its products (tests pin one to compare the two).
internal enum ConvSchedule { Auto, Batch, BySample }
