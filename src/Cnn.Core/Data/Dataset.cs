namespace DistTrain.Cnn.Data;

/// Labelled single-channel images kept as raw bytes; samples are normalised to float only when
/// gathered into a batch, (pixel/255 - Mean) / Std.
public sealed class Dataset
{
    readonly byte[] _pixels;
    readonly byte[] _labels;
    readonly float[] _lookup = new float[256];

    public Dataset(string name, int height, int width, int classes, byte[] pixels, byte[] labels, float mean, float std)
    {
        if (height < 1 || width < 1) throw new DataFormatException($"{name}: image size {height}x{width} is not positive");
        if (pixels.LongLength != (long)labels.Length * height * width)
            throw new DataFormatException($"{name}: {pixels.Length} pixels do not make {labels.Length} images of {height}x{width}");
        if (!(std > 0)) throw new DataFormatException($"{name}: pixel standard deviation is {std}; all images are blank");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes)
                throw new DataFormatException($"{name}: label {labels[i]} of sample {i} is out of range, expected 0..{classes - 1}");
        Name = name; Height = height; Width = width; Classes = classes; Mean = mean; Std = std;
        _pixels = pixels;
        _labels = labels;
        for (int v = 0; v < 256; v++) _lookup[v] = (v / 255f - mean) / std;
    }

    public string Name { get; }
    public int Count => _labels.Length;
    public int Channels => 1;
    public int Height { get; }
    public int Width { get; }
    public int Classes { get; }
    public int SampleSize => Height * Width;
    public float Mean { get; }
    public float Std { get; }
    public ReadOnlySpan<byte> Pixels => _pixels;
    public ReadOnlySpan<byte> Labels => _labels;

    public byte Label(int index) => _labels[index];

    /// Writes the samples at `indices`, normalised, into dst (NCHW) and their labels into `labels`. No allocation.
    public void Gather(ReadOnlySpan<int> indices, Span<float> dst, Span<int> labels)
    {
        int size = SampleSize;
        for (int s = 0; s < indices.Length; s++)
        {
            int index = indices[s];
            if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), $"{Name}: sample {index} of {Count}");
            ReadOnlySpan<byte> src = _pixels.AsSpan(index * size, size);
            Span<float> to = dst.Slice(s * size, size);
            for (int i = 0; i < size; i++) to[i] = _lookup[src[i]];
            labels[s] = _labels[index];
        }
    }

    /// Mean and standard deviation of pixel/255 over all images (computed in double).
    public static (float Mean, float Std) Statistics(ReadOnlySpan<byte> pixels)
    {
        Span<long> histogram = stackalloc long[256];
        foreach (byte b in pixels) histogram[b]++;
        double n = pixels.Length, sum = 0, sumSq = 0;
        for (int v = 0; v < 256; v++) { double x = v / 255.0; sum += histogram[v] * x; sumSq += histogram[v] * x * x; }
        double mean = sum / n;
        return ((float)mean, (float)Math.Sqrt(Math.Max(0, sumSq / n - mean * mean)));
    }

    /// A seeded synthetic dataset that a small CNN learns quickly: each class has a fixed
    /// prototype (three bright blobs at class-specific places); each sample is its class's
    /// prototype shifted by up to 2 pixels, plus noise. Same arguments -> the same bytes.
    /// `normalization` gives the (mean, std) to normalise with (a test split uses its training split's); by default the sample's own.
    public static Dataset Synthetic(string name, int count, int seed, int height = 28, int width = 28, int classes = 10,
                                    (float Mean, float Std)? normalization = null)
    {
        var protoRng = new DeterministicRandom(DeterministicRandom.Derive((ulong)seed, 0xC1A55));
        var prototypes = new byte[classes][];
        for (int c = 0; c < classes; c++)
        {
            var p = new byte[height * width];
            for (int blob = 0; blob < 3; blob++)
            {
                int cy = 3 + protoRng.NextInt(Math.Max(1, height - 6)), cx = 3 + protoRng.NextInt(Math.Max(1, width - 6));
                for (int y = Math.Max(0, cy - 2); y <= Math.Min(height - 1, cy + 2); y++)
                    for (int x = Math.Max(0, cx - 2); x <= Math.Min(width - 1, cx + 2); x++)
                        p[y * width + x] = 255;
            }
            prototypes[c] = p;
        }
        ulong nameSalt = name.Aggregate(17UL, (h, ch) => h * 31 + ch);   // train and test splits draw different samples
        var rng = new DeterministicRandom(DeterministicRandom.Derive((ulong)seed, (ulong)count, nameSalt));
        var pixels = new byte[count * height * width];
        var labels = new byte[count];
        for (int s = 0; s < count; s++)
        {
            int c = s % classes;   // balanced classes
            labels[s] = (byte)c;
            int dy = rng.NextInt(5) - 2, dx = rng.NextInt(5) - 2;
            var dst = pixels.AsSpan(s * height * width, height * width);
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    int sy = y - dy, sx = x - dx;
                    int v = (uint)sy < (uint)height && (uint)sx < (uint)width ? prototypes[c][sy * width + sx] : 0;
                    v = v * 3 / 4 + rng.NextInt(64);
                    dst[y * width + x] = (byte)Math.Min(255, v);
                }
        }
        var (mean, std) = normalization ?? Statistics(pixels);
        return new Dataset(name, height, width, classes, pixels, labels, mean, std);
    }
}
