namespace DistTrain.Cnn.Kernels;

/// The geometry of one 2-D convolution or pooling window over an input plane.
public readonly record struct ConvGeometry(int Channels, int Height, int Width, int Kernel, int Stride, int Padding)
{
    public int OutHeight => (Height + 2 * Padding - Kernel) / Stride + 1;
    public int OutWidth => (Width + 2 * Padding - Kernel) / Stride + 1;
    public int Positions => OutHeight * OutWidth;
    /// Rows of the column matrix: one per (channel, ky, kx).
    public int PatchSize => Channels * Kernel * Kernel;

    /// The output columns ox in [lo, hi) whose input column ox * Stride - Padding + kx lies inside the plane.
    public (int Lo, int Hi) ValidColumns(int kx)
    {
        int first = Padding - kx, last = Width - 1 + Padding - kx;   // ox * Stride must lie in [first, last]
        if (last < 0) return (0, 0);
        int lo = first <= 0 ? 0 : (first + Stride - 1) / Stride;
        int hi = Math.Min(OutWidth, last / Stride + 1);
        return (lo, Math.Max(lo, hi));
    }
}

/// Unfolds a batch into the column matrix col[(c,ky,kx), (n,oy,ox)] so a convolution over the whole
/// batch is one matrix product, and folds gradients back. Each output element is written by one
/// thread in a fixed order, so both are deterministic.
public static class Im2Col
{
    /// col must hold PatchSize x (batch * Positions) floats.
    public static void Unfold(ReadOnlyMemory<float> input, int batch, ConvGeometry g, Memory<float> col)
    {
        int rows = g.PatchSize;
        var job = t_unfold ??= new UnfoldJob();
        (job.Input, job.Batch, job.G, job.Col) = (input, batch, g, col);
        Parallelism.For(rows, (long)rows * batch * g.Positions, job);
        (job.Input, job.Col) = (default, default);   // hold no reference to the caller's buffers
    }

    [ThreadStatic] static UnfoldJob? t_unfold;
    [ThreadStatic] static FoldJob? t_fold;

    sealed class UnfoldJob : IBlockJob
    {
        public ReadOnlyMemory<float> Input;
        public Memory<float> Col;
        public int Batch;
        public ConvGeometry G;
        public void Run(int row) => UnfoldRow(Input.Span, Batch, G, Col.Span, row);
    }

    sealed class FoldJob : IBlockJob
    {
        public ReadOnlyMemory<float> Col;
        public Memory<float> GradInput;
        public int Batch, First, Channels;
        public ConvGeometry G;
        public void Run(int plane) => FoldPlane(Col.Span, Batch, G, GradInput.Span, plane / Channels, First + plane % Channels, First);
    }

    static unsafe void UnfoldRow(ReadOnlySpan<float> input, int batch, ConvGeometry g, Span<float> col, int row)
    {
        int kx = row % g.Kernel, ky = row / g.Kernel % g.Kernel, c = row / (g.Kernel * g.Kernel);
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, positions = g.Positions, stride = g.Stride;
        var (lo, hi) = g.ValidColumns(kx);
        Span<float> dstRow = col.Slice(row * batch * positions, batch * positions);
        fixed (float* dst = dstRow)
        fixed (float* inp = input)
        {
            for (int n = 0; n < batch; n++)
            {
                float* src = inp + (long)(n * g.Channels + c) * plane;
                float* to = dst + (long)n * positions;
                for (int oy = 0; oy < oh; oy++, to += ow)
                {
                    int y = oy * stride - g.Padding + ky;
                    if ((uint)y >= (uint)g.Height || hi <= lo) { new Span<float>(to, ow).Clear(); continue; }
                    for (int ox = 0; ox < lo; ox++) to[ox] = 0f;
                    for (int ox = hi; ox < ow; ox++) to[ox] = 0f;
                    float* from = src + y * g.Width - g.Padding + kx;
                    if (stride == 1) Elementwise.Copy(from + lo, to + lo, hi - lo);
                    else for (int ox = lo; ox < hi; ox++) to[ox] = from[ox * stride];
                }
            }
        }
    }

    /// gradInput (batch x Channels x Height x Width) = the fold of col; overwrites gradInput.
    public static void Fold(ReadOnlyMemory<float> col, int batch, ConvGeometry g, Memory<float> gradInput) =>
        Fold(col, batch, g, gradInput, 0, g.Channels);

    /// The planes of input channels [first, first + channels) of gradInput = the fold of col, which
    /// holds only those channels' rows (c, ky, kx); overwrites them. Each plane gets the sums of the
    /// whole fold, so a convolution can fold a block of channels while the block is in cache.
    public static void Fold(ReadOnlyMemory<float> col, int batch, ConvGeometry g, Memory<float> gradInput, int first, int channels)
    {
        if (first < 0 || channels < 0 || first + channels > g.Channels) throw new ArgumentException($"fold: channels {first}..{first + channels} of {g.Channels}");
        var job = t_fold ??= new FoldJob();
        (job.Col, job.Batch, job.G, job.GradInput, job.First, job.Channels) = (col, batch, g, gradInput, first, channels);
        Parallelism.For(batch * channels, (long)channels * g.Kernel * g.Kernel * batch * g.Positions, job);
        (job.Col, job.GradInput) = (default, default);
    }

    /// Plane (n, c) of gradInput from col, whose rows start at channel `firstRow`'s.
    static unsafe void FoldPlane(ReadOnlySpan<float> colSpan, int batch, ConvGeometry g, Span<float> gradInput, int n, int c, int firstRow)
    {
        int planeIndex = n * g.Channels + c;
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, positions = g.Positions, stride = g.Stride;
        Span<float> dstPlane = gradInput.Slice(planeIndex * plane, plane);
        dstPlane.Clear();
        fixed (float* dst = dstPlane)
        fixed (float* col = colSpan)
        {
            // Each input element receives its contributions in the order (ky, kx): the same sums
            // whether a row is added element by element or as a vector.
            for (int ky = 0; ky < g.Kernel; ky++)
                for (int kx = 0; kx < g.Kernel; kx++)
                {
                    int row = ((c - firstRow) * g.Kernel + ky) * g.Kernel + kx;
                    var (lo, hi) = g.ValidColumns(kx);
                    if (hi <= lo) continue;
                    float* src = col + (long)row * batch * positions + (long)n * positions;
                    for (int oy = 0; oy < oh; oy++, src += ow)
                    {
                        int y = oy * stride - g.Padding + ky;
                        if ((uint)y >= (uint)g.Height) continue;
                        float* to = dst + y * g.Width - g.Padding + kx;
                        if (stride == 1) Elementwise.AddInto(to + lo, src + lo, hi - lo);
                        else for (int ox = lo; ox < hi; ox++) to[ox * stride] += src[ox];
                    }
                }
        }
    }
}
