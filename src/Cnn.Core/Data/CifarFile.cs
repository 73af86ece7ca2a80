namespace DistTrain.Cnn.Data;

/// The binary formats of CIFAR-10 and CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html):
/// records of label bytes then 3072 pixel bytes, 32 x 32 red, then green, then blue, each plane
/// row-major (so C x H x W already). CIFAR-10: one label byte (0..9); files data_batch_1.bin to
/// data_batch_5.bin and test_batch.bin of 10,000 records each. CIFAR-100: a coarse label (0..19)
/// then a fine label (0..99), which is the one trained on; files train.bin (50,000) and test.bin
/// (10,000). Everything is validated: a file of whole records, at least one, every label in range.
public static class CifarFile
{
    public const int Channels = 3, Side = 32, ImageBytes = Channels * Side * Side;

    /// The files of each format, training files first, in the order their bytes make the dataset's identity.
    public static readonly IReadOnlyList<string> Cifar10Train = [.. Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin")];
    public const string Cifar10Test = "test_batch.bin";
    public const string Cifar100Train = "train.bin", Cifar100Test = "test.bin";

    /// How a format's records are laid out: label bytes before the pixels, the one trained on, its class count.
    public sealed record Layout(string Name, int LabelBytes, int ClassCount, int? CoarseClasses)
    {
        public int RecordBytes => LabelBytes + ImageBytes;
    }

    public static readonly Layout Cifar10 = new("CIFAR-10", 1, 10, null);
    public static readonly Layout Cifar100 = new("CIFAR-100", 2, 100, 20);

    /// The records of one file: pixels (records x 3072) and the trained-on labels.
    public static (byte[] Pixels, byte[] Labels) Read(string path, Layout layout)
    {
        var bytes = DataFiles.ReadAll(path);
        if (bytes.Length == 0) throw new DataFormatException($"{path}: empty; expected {layout.Name} records of {layout.RecordBytes} bytes");
        if (bytes.Length % layout.RecordBytes != 0)
            throw new DataFormatException($"{path}: {bytes.Length} bytes are not whole {layout.Name} records of {layout.RecordBytes} bytes " +
                                          $"({layout.LabelBytes} label byte{(layout.LabelBytes > 1 ? "s" : "")} + {ImageBytes} pixels); " +
                                          $"{bytes.Length % layout.RecordBytes} bytes left over after {bytes.Length / layout.RecordBytes} records");
        int count = bytes.Length / layout.RecordBytes;
        var pixels = new byte[(long)count * ImageBytes];
        var labels = new byte[count];
        for (int r = 0; r < count; r++)
        {
            var record = bytes.AsSpan(r * layout.RecordBytes, layout.RecordBytes);
            if (layout.CoarseClasses is int coarse && record[0] >= coarse)
                throw new DataFormatException($"{path}: record {r}: coarse label {record[0]} is out of range, expected 0..{coarse - 1}");
            byte label = record[layout.LabelBytes - 1];
            if (label >= layout.ClassCount)
                throw new DataFormatException($"{path}: record {r}: label {label} is out of range, expected 0..{layout.ClassCount - 1} ({layout.Name})");
            labels[r] = label;
            record[layout.LabelBytes..].CopyTo(pixels.AsSpan(r * ImageBytes, ImageBytes));
        }
        return (pixels, labels);
    }

    /// Writes records in `layout` (CIFAR-100's coarse label: the fine one divided by 5); for tests and tools.
    public static void Write(string path, Layout layout, ReadOnlySpan<byte> pixels, ReadOnlySpan<byte> labels)
    {
        if (pixels.Length != (long)labels.Length * ImageBytes)
            throw new ArgumentException($"{path}: {pixels.Length} pixels do not make {labels.Length} images of {ImageBytes} bytes");
        var bytes = new byte[(long)labels.Length * layout.RecordBytes];
        for (int r = 0; r < labels.Length; r++)
        {
            var record = bytes.AsSpan(r * layout.RecordBytes, layout.RecordBytes);
            if (layout.LabelBytes == 2) record[0] = (byte)(labels[r] / 5);
            record[layout.LabelBytes - 1] = labels[r];
            pixels.Slice(r * ImageBytes, ImageBytes).CopyTo(record[layout.LabelBytes..]);
        }
        File.WriteAllBytes(path, bytes);
    }
}
