using System.Buffers.Binary;

namespace DistTrain.Cnn.Data;

public sealed record IdxImages(int Count, int Rows, int Cols, byte[] Pixels);

/// The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic 0x00000803 for images
/// of rank 3, 0x00000801 for labels of rank 1: two zero bytes, type 0x08 = unsigned byte, rank),
/// the dimensions as 32-bit big-endian integers, then the bytes. Everything is validated.
public static class IdxFile
{
    public const int ImagesMagic = 0x00000803;
    public const int LabelsMagic = 0x00000801;

    public static IdxImages ReadImages(string path)
    {
        var bytes = DataFiles.ReadAll(path);
        var dims = ReadHeader(path, bytes, ImagesMagic, rank: 3, "images");
        long expected = 16 + (long)dims[0] * dims[1] * dims[2];
        CheckLength(path, bytes, expected, $"{dims[0]} images of {dims[1]}x{dims[2]}");
        return new IdxImages(dims[0], dims[1], dims[2], bytes[16..]);
    }

    public static byte[] ReadLabels(string path)
    {
        var bytes = DataFiles.ReadAll(path);
        var dims = ReadHeader(path, bytes, LabelsMagic, rank: 1, "labels");
        CheckLength(path, bytes, 8 + (long)dims[0], $"{dims[0]} labels");
        return bytes[8..];
    }

    public static void WriteImages(string path, int count, int rows, int cols, ReadOnlySpan<byte> pixels)
    {
        if (pixels.Length != (long)count * rows * cols)
            throw new ArgumentException($"{path}: {pixels.Length} pixels do not make {count} images of {rows}x{cols}");
        var header = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, ImagesMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), rows);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), cols);
        Write(path, header, pixels);
    }

    public static void WriteLabels(string path, ReadOnlySpan<byte> labels)
    {
        var header = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(header, LabelsMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), labels.Length);
        Write(path, header, labels);
    }

    static void Write(string path, byte[] header, ReadOnlySpan<byte> body)
    {
        using var f = File.Create(path);
        f.Write(header);
        f.Write(body);
    }

    static int[] ReadHeader(string path, byte[] bytes, int magic, int rank, string what)
    {
        int headerLength = 4 + 4 * rank;
        if (bytes.Length < 4)
            throw new DataFormatException($"{path}: truncated: {bytes.Length} bytes, too short for an IDX header");
        int found = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (found != magic)
        {
            string hint = (found & 0xFF) != rank && (found & ~0xFF) == 0x800 ? $" (rank {found & 0xFF}, {what} need rank {rank})" : "";
            throw new DataFormatException($"{path}: expected magic 0x{magic:X8} ({what}), found 0x{found:X8}{hint}");
        }
        if (bytes.Length < headerLength)
            throw new DataFormatException($"{path}: truncated: header needs {headerLength} bytes, file has {bytes.Length}");
        var dims = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (dims[i] <= 0) throw new DataFormatException($"{path}: dimension {i + 1} is {dims[i]}, expected a positive size");
        }
        return dims;
    }

    static void CheckLength(string path, byte[] bytes, long expected, string what)
    {
        if (bytes.Length < expected)
            throw new DataFormatException($"{path}: truncated: expected {expected} bytes for {what}, found {bytes.Length}");
        if (bytes.Length > expected)
            throw new DataFormatException($"{path}: {bytes.Length - expected} unexpected trailing bytes after {what} ({expected} bytes expected)");
    }
}
