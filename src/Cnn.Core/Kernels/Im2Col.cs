namespace DistTrain.Cnn.Kernels;

/// The geometry of one 2-D convolution or pooling window over an input plane.
public readonly record struct ConvGeometry(int Channels, int Height, int Width, int Kernel, int Stride, int Padding)
{
    public int OutHeight => (Height + 2 * Padding - Kernel) / Stride + 1;
    public int OutWidth => (Width + 2 * Padding - Kernel) / Stride + 1;
    public int Positions => OutHeight * OutWidth;
    /// Rows of the column matrix: one per (channel, ky, kx).
    public int PatchSize => Channels * Kernel * Kernel;
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
        public int Batch;
        public ConvGeometry G;
        public void Run(int plane) => FoldPlane(Col.Span, Batch, G, GradInput.Span, plane);
    }

    static void UnfoldRow(ReadOnlySpan<float> input, int batch, ConvGeometry g, Span<float> col, int row)
    {
        int kx = row % g.Kernel, ky = row / g.Kernel % g.Kernel, c = row / (g.Kernel * g.Kernel);
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, positions = g.Positions;
        Span<float> dst = col.Slice(row * batch * positions, batch * positions);
        for (int n = 0; n < batch; n++)
        {
            ReadOnlySpan<float> src = input.Slice((n * g.Channels + c) * plane, plane);
            int d = n * positions;
            for (int oy = 0; oy < oh; oy++)
            {
                int y = oy * g.Stride - g.Padding + ky;
                if ((uint)y >= (uint)g.Height) { dst.Slice(d, ow).Clear(); d += ow; continue; }
                int rowStart = y * g.Width;
                for (int ox = 0; ox < ow; ox++, d++)
                {
                    int x = ox * g.Stride - g.Padding + kx;
                    dst[d] = (uint)x < (uint)g.Width ? src[rowStart + x] : 0f;
                }
            }
        }
    }

    /// gradInput (batch x Channels x Height x Width) = the fold of col; overwrites gradInput.
    public static void Fold(ReadOnlyMemory<float> col, int batch, ConvGeometry g, Memory<float> gradInput)
    {
        int planes = batch * g.Channels;
        var job = t_fold ??= new FoldJob();
        (job.Col, job.Batch, job.G, job.GradInput) = (col, batch, g, gradInput);
        Parallelism.For(planes, (long)g.PatchSize * batch * g.Positions, job);
        (job.Col, job.GradInput) = (default, default);
    }

    static void FoldPlane(ReadOnlySpan<float> col, int batch, ConvGeometry g, Span<float> gradInput, int planeIndex)
    {
        int n = planeIndex / g.Channels, c = planeIndex % g.Channels;
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, positions = g.Positions;
        Span<float> dst = gradInput.Slice(planeIndex * plane, plane);
        dst.Clear();
        for (int ky = 0; ky < g.Kernel; ky++)
            for (int kx = 0; kx < g.Kernel; kx++)
            {
                int row = (c * g.Kernel + ky) * g.Kernel + kx;
                ReadOnlySpan<float> src = col.Slice(row * batch * positions + n * positions, positions);
                int s = 0;
                for (int oy = 0; oy < oh; oy++)
                {
                    int y = oy * g.Stride - g.Padding + ky;
                    if ((uint)y >= (uint)g.Height) { s += ow; continue; }
                    for (int ox = 0; ox < ow; ox++, s++)
                    {
                        int x = ox * g.Stride - g.Padding + kx;
                        if ((uint)x < (uint)g.Width) dst[y * g.Width + x] += src[s];
                    }
                }
            }
    }
}
