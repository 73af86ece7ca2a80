using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace DistTrain.Cnn.Checkpoints;

/// A tensor with its values; Data.Length == product(Shape) (1 for a scalar, shape []).
public sealed record NamedTensor(string Name, int[] Shape, float[] Data);

/// The safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
/// ({"__metadata__": {...}, "name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}),
/// then the raw little-endian tensor bytes. Only F32 is used here. Reading validates everything;
/// writing goes to a temporary file that is flushed and renamed, so a crash never leaves half a file.
public sealed class SafeTensorsFile
{
    SafeTensorsFile(SafeTensorsHeader header, IReadOnlyList<NamedTensor> tensors)
    {
        Header = header;
        Tensors = tensors;
    }

    /// Metadata, names and shapes; the file's tensors are in the same order.
    public SafeTensorsHeader Header { get; }
    public string Path => Header.Path;
    public IReadOnlyDictionary<string, string> Metadata => Header.Metadata;
    /// In data-offset order, which is the order they were written in.
    public IReadOnlyList<NamedTensor> Tensors { get; }
    public bool Contains(string name) => Header.Contains(name);
    public NamedTensor this[string name] => Tensors[Header.IndexOf(name)];

    /// Reads and validates the whole file; every problem is a CheckpointFormatException naming `path`.
    public static SafeTensorsFile Read(string path) => Open(path, file =>
    {
        var header = SafeTensorsHeader.Parse(path, file);
        var tensors = new List<NamedTensor>(header.Tensors.Count);
        foreach (var info in header.Tensors)
        {
            var data = new float[info.ElementCount];
            if (info.Dtype == "F32")
            {
                file.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
                if (!BitConverter.IsLittleEndian)
                {
                    var bits = MemoryMarshal.Cast<float, int>(data.AsSpan());
                    BinaryPrimitives.ReverseEndianness(bits, bits);
                }
            }
            else
            {
                var raw = new byte[(long)data.Length * TensorInfo.DtypeSizes[info.Dtype]];
                file.ReadExactly(raw);
                Convert(info.Dtype, raw, data);
            }
            tensors.Add(new NamedTensor(info.Name, info.Shape, data));
        }
        return new SafeTensorsFile(header, tensors.AsReadOnly());
    });

    /// Little-endian values of another element type as floats: F16 and BF16 exactly, F64 rounded to
    /// nearest, integers as the nearest float.
    static void Convert(string dtype, ReadOnlySpan<byte> raw, Span<float> data)
    {
        for (int i = 0; i < data.Length; i++)
            data[i] = dtype switch
            {
                "F64" => (float)BinaryPrimitives.ReadDoubleLittleEndian(raw[(8 * i)..]),
                "F16" => (float)BinaryPrimitives.ReadHalfLittleEndian(raw[(2 * i)..]),
                "BF16" => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(raw[(2 * i)..]) << 16),
                "I64" => BinaryPrimitives.ReadInt64LittleEndian(raw[(8 * i)..]),
                "I32" => BinaryPrimitives.ReadInt32LittleEndian(raw[(4 * i)..]),
                "I16" => BinaryPrimitives.ReadInt16LittleEndian(raw[(2 * i)..]),
                "I8" => (sbyte)raw[i],
                "U8" or "BOOL" => raw[i],
                _ => throw new InvalidOperationException($"no conversion from {dtype}"),
            };
    }

    /// Reads and validates only the header (metadata, names, shapes), not the tensor values.
    public static SafeTensorsHeader ReadHeader(string path) => Open(path, file => SafeTensorsHeader.Parse(path, file));

    static T Open<T>(string path, Func<FileStream, T> read)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
            return read(file);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw SafeTensorsHeader.Bad(path, "file not found");
        }
        catch (EndOfStreamException)
        {
            throw SafeTensorsHeader.Bad(path, "truncated while reading (file changed underneath?)");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw SafeTensorsHeader.Bad(path, $"cannot read: {e.Message}");
        }
    }

    /// Writes `tensors` in order, contiguously, after a header holding `metadata`. Atomic: the bytes go to
    /// PATH.tmp-RANDOM in the same directory, are flushed to disk, and the temporary file is renamed over PATH.
    /// On any failure the temporary file is removed and an existing PATH is left as it was. Arguments are
    /// checked (ArgumentException) before anything touches the disk.
    public static void Write(string path, IReadOnlyList<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors,
                             IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        byte[] header = BuildHeader(tensors, metadata);

        AtomicFile.Write(path, file =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            file.Write(length);
            file.Write(header);
            foreach (var (_, _, data) in tensors) WriteLittleEndian(file, data.Span);
        });
    }

    static void WriteLittleEndian(Stream file, ReadOnlySpan<float> data)
    {
        if (BitConverter.IsLittleEndian)
        {
            file.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        Span<int> chunk = new int[Math.Min(data.Length, 16384)];
        var bits = MemoryMarshal.Cast<float, int>(data);
        for (int i = 0; i < bits.Length; i += chunk.Length)
        {
            var part = chunk[..Math.Min(chunk.Length, bits.Length - i)];
            BinaryPrimitives.ReverseEndianness(bits.Slice(i, part.Length), part);
            file.Write(MemoryMarshal.AsBytes(part));
        }
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// The JSON header, padded with spaces to a multiple of 8 bytes so the data starts aligned.
    static byte[] BuildHeader(IReadOnlyList<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors,
                              IReadOnlyDictionary<string, string> metadata)
    {
        var names = new HashSet<string>();
        foreach (var (name, shape, data) in tensors)
        {
            CheckText(name, "tensor name");
            if (name == "__metadata__" || !names.Add(name)) throw new ArgumentException($"safetensors: duplicate or reserved tensor name '{name}'");
            ArgumentNullException.ThrowIfNull(shape, $"shape of '{name}'");
            long elements = 1;
            foreach (int d in shape)
            {
                if (d < 0) throw new ArgumentException($"safetensors: '{name}' has a negative dimension in [{string.Join(",", shape)}]");
                elements = Math.Min(elements * d, long.MaxValue / int.MaxValue);   // saturate: stays > any array length
            }
            if (elements != data.Length) throw new ArgumentException($"safetensors: '{name}' has shape [{string.Join(",", shape)}] but {data.Length} values");
        }
        foreach (var (key, value) in metadata)
        {
            CheckText(key, "metadata key");
            CheckText(value, $"metadata '{key}'");
        }

        using var ms = new MemoryStream();
        // Relaxed escaping keeps non-ASCII and nested JSON readable; the output is still strict JSON.
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            foreach (var (key, value) in metadata) w.WriteString(key, value);
            w.WriteEndObject();
            long offset = 0;
            foreach (var (name, shape, data) in tensors)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (int d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset += 4L * data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        while ((ms.Length & 7) != 0) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    /// The JSON writer would silently turn a lone surrogate into U+FFFD; refuse instead so names round-trip.
    static void CheckText(string? text, string what)
    {
        if (text is null) throw new ArgumentNullException(what);
        try { StrictUtf8.GetByteCount(text); }
        catch (EncoderFallbackException) { throw new ArgumentException($"safetensors: {what} '{text}' is not valid UTF-16 text"); }
    }
}
