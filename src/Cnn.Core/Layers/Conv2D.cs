using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Layers;

/// 2-D convolution with a kernel shared over all positions: the kernel gradient is the sum of the
/// contributions of every position it visited. Computed as im2col + matrix products: over the
/// batch when its columns are small, else over groups of a few samples, whose columns (about
/// 256 KB) stay in the core's cache from the unfold to the product and the fold, instead of a
/// batch's (10.6 MB for mnist-cnn's conv2 on 16 samples) streaming through memory. The weight gradient's dot products and the bias sums carry their 8 lanes from one group
/// to the next (<see cref="Gemm.NTLanes"/>; a group's columns are a multiple of 8, but for the
/// last one's tail), so every element gets the chain of operations of one product over the whole
/// batch, whatever the grouping. Parameters: weight [out, in, k, k], then bias [out].
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

    /// Samples per group (null: chosen from the geometry); tests pin it to compare groupings.
    internal int? GroupSamples { get; set; }

    /// Whether the columns are read in place (<see cref="ConvColumns"/>) instead of unfolded (null:
    /// chosen); tests pin it to compare the two.
    internal bool? ColumnsInPlace { get; set; }
    int[] _columnRows = [], _columnChunks = [];
    float[] _padded = [];

    /// Columns in place, one sample at a time, where the geometry allows and the batch's columns would
    /// not stay in cache (a batch with small columns is one product, which costs fewer calls).
    bool InPlace(ConvGeometry g, int batch)
    {
        if (ColumnsInPlace is bool pinned)
            return !pinned || ConvColumns.Supported(g) ? pinned : throw new InvalidOperationException($"columns in place: not for stride {g.Stride} and {g.OutWidth} wide output rows");
        return ConvColumns.Supported(g) && 4L * g.PatchSize * g.Positions * batch > BatchColumnBytes;
    }

    /// Sample s's columns in place: its input as it is, or a zero-padded copy when the convolution pads.
    ConvColumns Columns(Tensor input, int s, ConvGeometry g)
    {
        if (_columnRows.Length != g.PatchSize) (_columnRows, _columnChunks) = ConvColumns.Offsets(g);
        var sample = input.Memory.Slice(s * g.Channels * g.Height * g.Width, g.Channels * g.Height * g.Width);
        if (g.Padding == 0) return new ConvColumns(sample, _columnRows, _columnChunks);
        int size = ConvColumns.PaddedSize(g);
        if (_padded.Length < size) _padded = new float[size];
        ConvColumns.Pad(sample.Span, g, _padded);
        return new ConvColumns(_padded.AsMemory(0, size), _columnRows, _columnChunks);
    }

    /// Bytes of a group's columns to aim for: well inside a core's L2 beside the other operands.
    const int GroupColumnBytes = 256 << 10;
    /// A batch with up to this many bytes of columns is one group: they stay in the caches between
    /// the passes, and smaller products would only cost more calls. Above it, the backward pass
    /// unfolds each group again (a copy of a few hundred KB in cache is cheaper than megabytes to
    /// and from memory).
    const int BatchColumnBytes = 2 << 20;

    /// The samples per group (at most the batch): the whole batch when its columns are small, else
    /// a multiple of the fewest whose positions are a multiple of 8 (the lanes of a dot product),
    /// as many as fit <see cref="GroupColumnBytes"/>. Forward and backward get the same, so the
    /// backward pass knows whether the forward pass's columns are still there (one group).
    int GroupSize(ConvGeometry g, int batch)
    {
        int unit = 8 >> Math.Min(3, System.Numerics.BitOperations.TrailingZeroCount(g.Positions));   // 8 / gcd(positions, 8)
        if (GroupSamples is int pinned)
            return pinned % unit == 0 || pinned >= batch ? Math.Clamp(pinned, 1, Math.Max(1, batch))
                : throw new InvalidOperationException($"groups of {pinned} samples of {g.Positions} positions: not a multiple of 8 columns");
        if (4L * g.PatchSize * g.Positions * batch <= BatchColumnBytes) return Math.Max(1, batch);
        long unitBytes = 4L * g.PatchSize * g.Positions * unit;
        return Math.Min(batch, unit * (int)Math.Max(1, GroupColumnBytes / unitBytes));
    }

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var g = Geometry;
        int n = input.N, positions = g.Positions, patch = g.PatchSize, weights = OutChannels * patch;
        bool inPlace = InPlace(g, n);
        int group = inPlace ? 1 : GroupSize(g, n), inSize = InputShape.Size, outSize = OutChannels * positions;
        _input = input;
        var output = Tensor.Ensure(ref _output, OutputShape, n);
        EnsureScratch(inPlace ? 0 : group * positions, patch);
        ReadOnlySpan<float> bias = Parameters[weights..];
        for (int s0 = 0; s0 < n; s0 += group)
        {
            int samples = Math.Min(group, n - s0), columns = samples * positions;
            // out[co, (s,p)] = W[co, :] . col[:, (s,p)]: for one sample, that is its output.
            var product = samples == 1 ? output.Memory.Slice(s0 * outSize, outSize) : _channelMajor.AsMemory(0, OutChannels * columns);
            if (inPlace) Gemm.NN(ParameterMemory[..weights], patch, 1, Columns(input, s0, g), product, OutChannels, columns, patch);
            else
            {
                var col = _col.AsMemory(0, patch * columns);
                Im2Col.Unfold(input.Memory.Slice(s0 * inSize, samples * inSize), samples, g, col);
                Gemm.NN(ParameterMemory[..weights], patch, 1, col, product, OutChannels, columns, patch, accumulate: false);
            }
            // [co, s, p] -> [s, co, p], adding the bias.
            ReadOnlySpan<float> src = product.Span;
            Span<float> dst = output.Span.Slice(s0 * outSize, samples * outSize);
            for (int s = 0; s < samples; s++)
                for (int co = 0; co < OutChannels; co++)
                    Elementwise.AddScalar(src.Slice(co * columns + s * positions, positions), bias[co], dst.Slice((s * OutChannels + co) * positions, positions));
        }
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var g = Geometry;
        int n = gradOutput.N, positions = g.Positions, patch = g.PatchSize, weights = OutChannels * patch;
        bool inPlace = InPlace(g, n);
        int group = inPlace ? 1 : GroupSize(g, n), inSize = InputShape.Size, outSize = OutChannels * positions;
        var input = _input ?? throw new InvalidOperationException("backward before forward");
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, n);
        EnsureScratch(inPlace ? 0 : group * positions, patch, ComputeInputGradient ? group * positions : 0);
        int laneCount = Gemm.NTLaneCount(OutChannels, patch);
        if (_lanes.Length < laneCount) _lanes = new float[laneCount];
        if (_biasLanes.Length < 8 * OutChannels) _biasLanes = new float[8 * OutChannels];
        Array.Clear(_biasLanes);
        Span<float> gradBias = Gradients[weights..];
        for (int s0 = 0; s0 < n; s0 += group)
        {
            int samples = Math.Min(group, n - s0), columns = samples * positions;
            bool last = s0 + samples == n;
            int whole = last ? columns / 8 * 8 : columns;   // only the last group has a tail
            // [s, co, p] -> [co, s, p] (for one sample, its gradient as it is).
            var gradOut = gradOutput.Memory.Slice(s0 * outSize, samples * outSize);
            if (samples > 1)
            {
                ReadOnlySpan<float> src = gradOut.Span;
                Span<float> channelMajor = _channelMajor.AsSpan(0, OutChannels * columns);
                for (int co = 0; co < OutChannels; co++)
                    for (int s = 0; s < samples; s++)
                        src.Slice((s * OutChannels + co) * positions, positions).CopyTo(channelMajor.Slice(co * columns + s * positions, positions));
                gradOut = _channelMajor.AsMemory(0, OutChannels * columns);
            }
            // The bias gradient sums each channel's row over the batch and positions.
            for (int co = 0; co < OutChannels; co++)
            {
                var row = gradOut.Span.Slice(co * columns, columns);
                Elementwise.AddToLanes(row[..whole], _biasLanes.AsSpan(8 * co, 8));
                if (last) gradBias[co] += Elementwise.SumOfLanes(_biasLanes.AsSpan(8 * co, 8), row[whole..]);
            }
            // dW[co, (c,ky,kx)] += sum over (s,p) of gradOut[co,(s,p)] * col[(c,ky,kx),(s,p)]
            // One group over the batch reads the columns its forward pass left; groups unfold theirs
            // again; in place, there is no tail (positions are a multiple of 8).
            if (inPlace) Gemm.NTLanes(gradOut, columns, Columns(input, s0, g), OutChannels, patch, whole, _lanes, first: s0 == 0);
            else
            {
                var col = _col.AsMemory(0, patch * columns);
                if (group < n) Im2Col.Unfold(input.Memory.Slice(s0 * inSize, samples * inSize), samples, g, col);
                Gemm.NTLanes(gradOut, columns, col, columns, OutChannels, patch, whole, _lanes, first: s0 == 0);
            }
            if (last) Gemm.NTLanesFinish(_lanes, Gradients[..weights], OutChannels, patch, accumulate: true,
                                         gradOut.Span[whole..], columns, inPlace ? default : _col.AsSpan(whole), columns, columns - whole);
            if (!ComputeInputGradient) continue;
            // dCol = W^T gradOut, then fold the columns back onto the input planes: a block of input
            // channels at a time, whose rows of dCol stay in cache from the product to the fold.
            int area = Kernel * Kernel, block = ChannelBlock(g, columns);
            for (int c0 = 0; c0 < g.Channels; c0 += block)
            {
                int channels = Math.Min(block, g.Channels - c0), rows = channels * area;
                var gradCol = _gradCol.AsMemory(0, rows * columns);
                Gemm.NN(ParameterMemory[(c0 * area)..weights], 1, patch, gradOut, gradCol, rows, columns, OutChannels, accumulate: false);
                Im2Col.Fold(gradCol, samples, g, gradInput.Memory.Slice(s0 * inSize, samples * inSize), c0, channels);
            }
        }
        return gradInput;
    }

    /// Input channels per block of the input gradient: as many as keep their rows of dCol within
    /// <see cref="GroupColumnBytes"/>, at least one (pinned by tests through <see cref="FoldChannels"/>).
    int ChannelBlock(ConvGeometry g, int columns) =>
        Math.Clamp(FoldChannels ?? GroupColumnBytes / (4 * Kernel * Kernel * Math.Max(1, columns)), 1, g.Channels);

    /// Input channels per block of the input gradient (null: chosen); tests pin it.
    internal int? FoldChannels { get; set; }

    /// Buffers for a group's unfolded columns, their gradient and its channel-major product.
    void EnsureScratch(int columns, int patch, int? gradColumns = null)
    {
        if (_col.Length < patch * columns) _col = new float[patch * columns];
        int grad = gradColumns ?? columns;
        if (_gradCol.Length < patch * grad) _gradCol = new float[patch * grad];
        if (_channelMajor.Length < OutChannels * columns) _channelMajor = new float[OutChannels * columns];
    }
}
