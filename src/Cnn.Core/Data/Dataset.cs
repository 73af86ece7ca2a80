namespace DistTrain.Cnn.Data;

/// Labelled images of C channels, H x W pixels each, kept as raw bytes, one sample after the other
/// and each channel's plane after the other (C x H x W, as CIFAR stores them); samples are
/// normalised to float only when gathered into a batch, (pixel/255 - mean[c]) / std[c].
public sealed class Dataset
{
    readonly byte[] _pixels;
    readonly byte[] _labels;
    /// 256 normalised values per channel.
    readonly float[] _lookup;
    readonly float[] _mean, _std;

    /// One channel, normalised with one mean and standard deviation (MNIST, Fashion-MNIST).
    public Dataset(string name, int height, int width, int classes, byte[] pixels, byte[] labels, float mean, float std)
        : this(name, 1, height, width, classes, pixels, labels, [mean], [std]) { }

    /// `mean` and `std`: one per channel, of pixel/255 (the training split's, for every split).
    public Dataset(string name, int channels, int height, int width, int classes, byte[] pixels, byte[] labels, float[] mean, float[] std)
    {
        if (channels < 1 || height < 1 || width < 1) throw new DataFormatException($"{name}: image shape {channels}x{height}x{width} is not positive");
        if (classes < 1 || classes > 256) throw new DataFormatException($"{name}: {classes} classes; expected 1 to 256 (labels are bytes)");
        if (pixels.LongLength != (long)labels.Length * channels * height * width)
            throw new DataFormatException($"{name}: {pixels.Length} pixels do not make {labels.Length} images of {channels}x{height}x{width}");
        if (mean?.Length != channels || std?.Length != channels)
            throw new DataFormatException($"{name}: {mean?.Length ?? 0} means and {std?.Length ?? 0} standard deviations for {channels} channels");
        for (int c = 0; c < channels; c++)
            if (!(std[c] > 0) || !float.IsFinite(std[c]) || !float.IsFinite(mean[c]))
                throw new DataFormatException($"{name}: channel {c} has pixel mean {mean[c]} and standard deviation {std[c]}; the channel is blank in every image");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes)
                throw new DataFormatException($"{name}: label {labels[i]} of sample {i} is out of range, expected 0..{classes - 1}");
        Name = name; Channels = channels; Height = height; Width = width; Classes = classes;
        _mean = (float[])mean.Clone();
        _std = (float[])std.Clone();
        _pixels = pixels;
        _labels = labels;
        _lookup = new float[256 * channels];
        for (int c = 0; c < channels; c++)
            for (int v = 0; v < 256; v++) _lookup[c * 256 + v] = (v / 255f - mean[c]) / std[c];
    }

    public string Name { get; }
    public int Count => _labels.Length;
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public int Classes { get; }
    public int SampleSize => Channels * Height * Width;
    /// C x H x W, as a model's input is declared.
    public string ShapeText => $"{Channels}x{Height}x{Width}";
    /// Per channel: the mean and standard deviation of pixel/255 samples are normalised with.
    public IReadOnlyList<float> Mean => _mean;
    public IReadOnlyList<float> Std => _std;
    public ReadOnlySpan<byte> Pixels => _pixels;
    public ReadOnlySpan<byte> Labels => _labels;

    public byte Label(int index) => _labels[index];

    /// Writes the samples at `indices`, normalised, into dst (NCHW) and their labels into `labels`. No allocation.
    public void Gather(ReadOnlySpan<int> indices, Span<float> dst, Span<int> labels)
    {
        int size = SampleSize, plane = Height * Width;
        for (int s = 0; s < indices.Length; s++)
        {
            int index = indices[s];
            if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), $"{Name}: sample {index} of {Count}");
            for (int c = 0; c < Channels; c++)
            {
                ReadOnlySpan<byte> src = _pixels.AsSpan(index * size + c * plane, plane);
                Span<float> to = dst.Slice(s * size + c * plane, plane);
                ReadOnlySpan<float> lookup = _lookup.AsSpan(c * 256, 256);
                for (int i = 0; i < plane; i++) to[i] = lookup[src[i]];
            }
            labels[s] = _labels[index];
        }
    }

    /// Gather for training with `augmentation`: row rows[s] of this dataset is dataset sample
    /// ids[s] (the same for a dataset of its own; a shipped batch's rows are 0..n-1), which with
    /// `seed` and `epoch` decides its crop and flip. Pixels shifted in from outside the image are 0
    /// (normalised as 0 is). No allocation.
    public void Gather(ReadOnlySpan<int> rows, ReadOnlySpan<int> ids, ulong seed, int epoch, Augmentation augmentation, Span<float> dst, Span<int> labels)
    {
        if (ids.Length != rows.Length) throw new ArgumentException($"{Name}: {ids.Length} sample ids for {rows.Length} rows");
        int size = SampleSize, plane = Height * Width;
        for (int s = 0; s < rows.Length; s++)
        {
            int row = rows[s];
            if ((uint)row >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(rows), $"{Name}: sample {row} of {Count}");
            var (dy, dx, flip) = augmentation.Draw(seed, epoch, ids[s]);
            // Output columns whose source column x + dx (after the flip's mirror) lies inside the image.
            for (int c = 0; c < Channels; c++)
            {
                ReadOnlySpan<byte> src = _pixels.AsSpan(row * size + c * plane, plane);
                Span<float> to = dst.Slice(s * size + c * plane, plane);
                ReadOnlySpan<float> lookup = _lookup.AsSpan(c * 256, 256);
                float black = lookup[0];
                for (int y = 0; y < Height; y++)
                {
                    Span<float> line = to.Slice(y * Width, Width);
                    int sy = y + dy;
                    if ((uint)sy >= (uint)Height) { line.Fill(black); continue; }
                    ReadOnlySpan<byte> source = src.Slice(sy * Width, Width);
                    for (int x = 0; x < Width; x++)
                    {
                        int sx = (flip ? Width - 1 - x : x) + dx;
                        line[x] = (uint)sx < (uint)Width ? lookup[source[sx]] : black;
                    }
                }
            }
            labels[s] = _labels[row];
        }
    }

    /// Mean and standard deviation of pixel/255 over all images (computed in double).
    public static (float Mean, float Std) Statistics(ReadOnlySpan<byte> pixels)
    {
        var (mean, std) = Statistics(pixels, 1, pixels.Length);
        return (mean[0], std[0]);
    }

    /// Per channel, over images stored C x H x W one after the other (`plane` = H x W pixels).
    public static (float[] Mean, float[] Std) Statistics(ReadOnlySpan<byte> pixels, int channels, int plane)
    {
        var histograms = new long[channels * 256];
        int size = channels * plane;
        for (long start = 0; start + size <= pixels.Length; start += size)
            for (int c = 0; c < channels; c++)
                foreach (byte b in pixels.Slice((int)(start + c * plane), plane)) histograms[c * 256 + b]++;
        var mean = new float[channels];
        var std = new float[channels];
        for (int c = 0; c < channels; c++)
        {
            double n = 0, sum = 0, sumSq = 0;
            for (int v = 0; v < 256; v++) { long h = histograms[c * 256 + v]; double x = v / 255.0; n += h; sum += h * x; sumSq += h * x * x; }
            double m = n > 0 ? sum / n : 0;
            mean[c] = (float)m;
            std[c] = n > 0 ? (float)Math.Sqrt(Math.Max(0, sumSq / n - m * m)) : 0f;
        }
        return (mean, std);
    }

    /// A seeded synthetic dataset that a small CNN learns quickly: each class has a fixed
    /// prototype (three bright blobs at class-specific places); each sample is its class's
    /// prototype shifted by up to 2 pixels, plus noise. Same arguments -> the same bytes; channel 0
    /// is the same whatever the channel count, and channel c shows the prototype of class
    /// (label + c) mod classes, with its own noise.
    /// `normalization` gives the per-channel (mean, std) to normalise with (a test split uses its training split's); by default the sample's own.
    public static Dataset Synthetic(string name, int count, int seed, int height = 28, int width = 28, int classes = 10,
                                    (float[] Mean, float[] Std)? normalization = null, int channels = 1)
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
        var colourRng = new DeterministicRandom(DeterministicRandom.Derive((ulong)seed, (ulong)count, nameSalt, 0xC0102));
        int plane = height * width;
        var pixels = new byte[(long)count * channels * plane];
        var labels = new byte[count];
        for (int s = 0; s < count; s++)
        {
            int label = s % classes;   // balanced classes
            labels[s] = (byte)label;
            int dy = rng.NextInt(5) - 2, dx = rng.NextInt(5) - 2;
            for (int ch = 0; ch < channels; ch++)
            {
                ref var noise = ref ch == 0 ? ref rng : ref colourRng;
                var prototype = prototypes[(label + ch) % classes];
                var dst = pixels.AsSpan((s * channels + ch) * plane, plane);
                for (int y = 0; y < height; y++)
                    for (int x = 0; x < width; x++)
                    {
                        int sy = y - dy, sx = x - dx;
                        int v = (uint)sy < (uint)height && (uint)sx < (uint)width ? prototype[sy * width + sx] : 0;
                        v = v * 3 / 4 + noise.NextInt(64);
                        dst[y * width + x] = (byte)Math.Min(255, v);
                    }
            }
        }
        var (mean, std) = normalization ?? Statistics(pixels, channels, plane);
        return new Dataset(name, channels, height, width, classes, pixels, labels, mean, std);
    }
}
