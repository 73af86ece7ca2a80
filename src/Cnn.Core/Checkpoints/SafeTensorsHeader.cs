using System.Buffers.Binary;
using System.Collections.ObjectModel;
using System.Text.Json;
using System.Text.Unicode;

namespace DistTrain.Cnn.Checkpoints;

/// A tensor's name, shape and element type as the header records them. DistTrain writes F32; it
/// reads the other numeric types too (F16 and BF16 weights from elsewhere, I64 counters) as floats.
public sealed record TensorInfo(string Name, int[] Shape, string Dtype = "F32")
{
    /// Bytes per element of the element types read.
    public static readonly IReadOnlyDictionary<string, int> DtypeSizes = new Dictionary<string, int>
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    /// The product of the dimensions; 1 for a scalar (shape []). Validated to fit a float[].
    public int ElementCount => (int)Shape.Aggregate(1L, (n, d) => n * d);
}

/// The JSON header of a safetensors file: metadata and the tensors in data order, without their values.
/// Parsing validates that the tensors tile the file's data buffer exactly, so a header that parses
/// describes a file whose values can be read.
public sealed class SafeTensorsHeader
{
    /// Real headers are kilobytes; a length beyond this is a corrupt or foreign file, not a big model.
    public const long MaxHeaderBytes = 100L << 20;

    readonly Dictionary<string, int> _indexByName;

    SafeTensorsHeader(string path, IReadOnlyDictionary<string, string> metadata, IReadOnlyList<TensorInfo> tensors)
    {
        Path = path;
        Metadata = metadata;
        Tensors = tensors;
        _indexByName = tensors.Select((t, i) => (t.Name, i)).ToDictionary(x => x.Name, x => x.i);
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// In data-offset order, which is the order they were written in.
    public IReadOnlyList<TensorInfo> Tensors { get; }
    public bool Contains(string name) => _indexByName.ContainsKey(name);
    public TensorInfo this[string name] => Tensors[IndexOf(name)];

    /// The position of a tensor in data order; a missing name is a CheckpointFormatException naming the file.
    internal int IndexOf(string name) =>
        _indexByName.TryGetValue(name, out int i) ? i : throw new CheckpointFormatException($"{Path}: no tensor '{name}'");

    /// Reads the length and header of `file` (positioned at its start), leaving it at the first tensor byte.
    internal static SafeTensorsHeader Parse(string path, Stream file)
    {
        long fileLength = file.Length;
        if (fileLength < 8) throw Bad(path, $"truncated: {fileLength} bytes, shorter than the 8-byte header length");
        Span<byte> lengthBytes = stackalloc byte[8];
        file.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes)
            throw Bad(path, $"header length {headerLength} is absurd (limit {MaxHeaderBytes} bytes); not a safetensors file?");
        if ((long)headerLength > fileLength - 8)
            throw Bad(path, $"truncated: header length {headerLength} but only {fileLength - 8} bytes follow it");

        var header = new byte[headerLength];
        file.ReadExactly(header);
        // JsonDocument defers UTF-8 checks of strings to GetString (InvalidOperationException), so check up front.
        if (!Utf8.IsValid(header)) throw Bad(path, "header is not valid UTF-8");

        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw Bad(path, $"header is not valid JSON: {e.Message.ReplaceLineEndings(" ")}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "header is not a JSON object");
            Dictionary<string, string>? metadata = null;
            var entries = new List<(TensorInfo Info, long Begin, long End)>();
            var names = new HashSet<string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(prop.Name)) throw Bad(path, $"duplicate entry '{prop.Name}' in the header");
                if (prop.Name == "__metadata__") metadata = ParseMetadata(path, prop.Value);
                else entries.Add(ParseEntry(path, prop));
            }

            // The tensors must tile the data buffer exactly: no gaps, no overlaps, nothing past the end.
            // Ties are empty tensors; the stable sort keeps them in header order.
            var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
            long dataLength = fileLength - 8 - (long)headerLength, expected = 0;
            foreach (var (info, begin, end) in ordered)
            {
                if (begin != expected) throw Bad(path, $"tensor '{info.Name}' starts at byte {begin}, expected {expected} (gap or overlap)");
                expected = end;
            }
            if (expected != dataLength)
                throw Bad(path, expected > dataLength
                    ? $"truncated: header says {expected} data bytes, file has {dataLength}"
                    : $"{dataLength - expected} unexpected bytes after the last tensor");

            return new SafeTensorsHeader(path, new ReadOnlyDictionary<string, string>(metadata ?? []),
                                         ordered.Select(e => e.Info).ToList().AsReadOnly());
        }
    }

    static Dictionary<string, string> ParseMetadata(string path, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object");
        var metadata = new Dictionary<string, string>();
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String) throw Bad(path, $"metadata '{m.Name}' is not a string");
            if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Bad(path, $"duplicate metadata key '{m.Name}'");
        }
        return metadata;
    }

    static (TensorInfo, long, long) ParseEntry(string path, JsonProperty prop)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object) throw Bad(path, $"tensor '{name}' is not an object");

        if (!v.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String) throw Bad(path, $"tensor '{name}' has no dtype");
        string type = dtype.GetString()!;
        if (!TensorInfo.DtypeSizes.TryGetValue(type, out int size))
            throw Bad(path, $"tensor '{name}' has dtype {type}; expected one of {string.Join(", ", TensorInfo.DtypeSizes.Keys)}");

        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array) throw Bad(path, $"tensor '{name}' has no shape");
        var shape = new int[shapeEl.GetArrayLength()];
        long elements = 1;
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out shape[i]) || shape[i] < 0)
                throw Bad(path, $"tensor '{name}' has an invalid dimension {d.GetRawText()}");
            // Stop before the product can overflow: Array.MaxLength < 2^31, each factor < 2^31.
            elements *= shape[i++];
            if (elements > Array.MaxLength) throw Bad(path, $"tensor '{name}' has more than {Array.MaxLength} elements");
        }

        if (!v.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{name}' has no data_offsets [begin, end]");
        if (offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Bad(path, $"tensor '{name}' has invalid data_offsets {offsets.GetRawText()}");
        if (end - begin != elements * size)
            throw Bad(path, $"tensor '{name}' has {end - begin} bytes, its shape [{string.Join(",", shape)}] needs {elements * size}");
        return (new TensorInfo(name, shape, type), begin, end);
    }

    internal static CheckpointFormatException Bad(string path, string what) => new($"{path}: {what}");
}
