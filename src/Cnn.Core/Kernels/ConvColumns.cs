using System.Runtime.CompilerServices;

namespace DistTrain.Cnn.Kernels;

/// The column matrix of one sample of a stride-1 convolution read in place from its (zero-padded)
/// input, instead of unfolded into a buffer: col[r, q] = Source[Rows[r] + Chunks[q / 8] + q % 8]
/// for patch row r = (c, ky, kx) and output position q. It exists when the output rows are a
/// multiple of 8 wide, so that every run of 8 positions (a lane group of <see cref="Gemm"/>'s dot
/// products, and a third of a 256-bit panel of its products) lies in one row of the input plane.
/// The floats are the unfold's, so the products' bits are the same; what goes is the unfold, a
/// sample's 663 KB for mnist-cnn's conv2, more than a Zen 3 core's L2, written and read back twice a step.
public readonly struct ConvColumns
{
    public ConvColumns(ReadOnlyMemory<float> source, int[] rows, int[] chunks)
    {
        Source = source; Rows = rows; Chunks = chunks;
    }

    /// One sample's input planes, padded as <see cref="Pad"/> does when the convolution pads.
    public ReadOnlyMemory<float> Source { get; }
    /// Where patch row (c, ky, kx) starts in Source: c * plane + ky * width + kx of the padded plane.
    public int[] Rows { get; }
    /// Where each run of 8 output positions (oy, ox..ox+7) starts, relative to a row: oy * width + ox.
    public int[] Chunks { get; }

    /// Whether a convolution's columns can be read in place.
    public static bool Supported(ConvGeometry g) => g.Stride == 1 && g.OutWidth % 8 == 0;

    /// The offsets of <see cref="Rows"/> and <see cref="Chunks"/> for geometry g over its padded plane.
    public static (int[] Rows, int[] Chunks) Offsets(ConvGeometry g)
    {
        if (!Supported(g)) throw new ArgumentException($"columns in place need stride 1 and output rows a multiple of 8 wide, got stride {g.Stride} and {g.OutWidth}");
        int width = g.Width + 2 * g.Padding, plane = (g.Height + 2 * g.Padding) * width;
        var rows = new int[g.PatchSize];
        for (int c = 0, r = 0; c < g.Channels; c++)
            for (int ky = 0; ky < g.Kernel; ky++)
                for (int kx = 0; kx < g.Kernel; kx++)
                    rows[r++] = c * plane + ky * width + kx;
        var chunks = new int[g.Positions / 8];
        for (int q = 0; q < chunks.Length; q++) chunks[q] = 8 * q / g.OutWidth * width + 8 * q % g.OutWidth;
        return (rows, chunks);
    }

    /// Floats of one padded sample.
    public static int PaddedSize(ConvGeometry g) => g.Channels * (g.Height + 2 * g.Padding) * (g.Width + 2 * g.Padding);

    /// Copies one sample (Channels x Height x Width) into the middle of its padded planes, zeros around.
    public static void Pad(ReadOnlySpan<float> sample, ConvGeometry g, Span<float> padded)
    {
        int width = g.Width + 2 * g.Padding, height = g.Height + 2 * g.Padding;
        padded[..PaddedSize(g)].Clear();
        for (int c = 0; c < g.Channels; c++)
            for (int y = 0; y < g.Height; y++)
                sample.Slice((c * g.Height + y) * g.Width, g.Width).CopyTo(padded.Slice((c * height + y + g.Padding) * width + g.Padding, g.Width));
    }
}

/// How a kernel finds the floats of an operand stored as rows: row r's floats at columns q..q+7
/// (q a multiple of 8) start at Row(r) + Offset(q). A struct per layout, so the JIT compiles each
/// kernel once per layout with the addressing inlined.
internal unsafe interface IRowSource
{
    float* Row(int r);
    nint Offset(nint q);
}

/// A row-major matrix: row r at b + r * ld, its columns side by side.
internal readonly unsafe struct DenseRows(float* b, int ld) : IRowSource
{
    readonly float* _b = b;
    readonly nint _ld = ld;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float* Row(int r) => _b + r * _ld;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public nint Offset(nint q) => q;
}

/// <see cref="ConvColumns"/> through pinned pointers.
internal readonly unsafe struct ColumnRows(float* source, int* rows, int* chunks) : IRowSource
{
    readonly float* _source = source;
    readonly int* _rows = rows, _chunks = chunks;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public float* Row(int r) => _source + _rows[r];
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public nint Offset(nint q) => _chunks[q >> 3];
}
