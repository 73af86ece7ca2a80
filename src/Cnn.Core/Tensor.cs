namespace DistTrain.Cnn;

/// The shape of one sample: channels x height x width (a dense layer's output is C x 1 x 1).
public readonly record struct SampleShape(int C, int H, int W)
{
    public int Size => C * H * W;
    public override string ToString() => H == 1 && W == 1 ? $"{C}" : $"{C}x{H}x{W}";
}

/// A batch of N samples in NCHW float32, contiguous. The buffer is allocated for the largest
/// batch seen and reused, so a training step at a fixed batch size allocates nothing.
public sealed class Tensor
{
    float[] _buffer;

    public Tensor(SampleShape shape, int batch)
    {
        Shape = shape;
        _buffer = new float[Math.Max(1, batch) * shape.Size];
        N = batch;
    }

    public SampleShape Shape { get; }
    public int N { get; private set; }
    public int C => Shape.C;
    public int H => Shape.H;
    public int W => Shape.W;
    public int Length => N * Shape.Size;

    /// The backing array; only its first <see cref="Length"/> elements belong to the tensor.
    public float[] Buffer => _buffer;
    public Span<float> Span => _buffer.AsSpan(0, Length);
    public Memory<float> Memory => _buffer.AsMemory(0, Length);
    public Span<float> Sample(int n) => _buffer.AsSpan(n * Shape.Size, Shape.Size);

    /// Sets the batch size, growing the buffer only when it is too small. Contents are unspecified after a grow.
    public void Resize(int batch)
    {
        if (batch < 0) throw new ArgumentOutOfRangeException(nameof(batch));
        int needed = batch * Shape.Size;
        if (needed > _buffer.Length) _buffer = new float[needed];
        N = batch;
    }

    /// Returns a tensor of this shape and batch, reusing <paramref name="existing"/> when possible.
    public static Tensor Ensure(ref Tensor? existing, SampleShape shape, int batch)
    {
        if (existing is null || existing.Shape != shape) existing = new Tensor(shape, batch);
        else existing.Resize(batch);
        return existing;
    }
}
