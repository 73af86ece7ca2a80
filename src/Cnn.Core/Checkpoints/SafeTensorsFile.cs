using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace DistTrain.Cnn.Checkpoints;

public sealed record NamedTensor(string Name, int[] Shape, float[] Data);

/// The safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
/// ({"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}),
/// then the raw little-endian tensor bytes. Only F32 is used here. Reading validates everything;
/// writing goes to a temporary file that is flushed and renamed, so a crash never leaves half a file.
public sealed class SafeTensorsFile
{
    const long MaxHeaderBytes = 100L << 20;
    readonly Dictionary<string, NamedTensor> _byName;

    SafeTensorsFile(IReadOnlyDictionary<string, string> metadata, IReadOnlyList<NamedTensor> tensors, string path)
    {
        Metadata = metadata;
        Tensors = tensors;
        Path = path;
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyList<NamedTensor> Tensors { get; }
    public bool Contains(string name) => _byName.ContainsKey(name);
    public NamedTensor this[string name] =>
        _byName.TryGetValue(name, out var t) ? t : throw new CheckpointFormatException($"{Path}: no tensor '{name}'");

    public static void Write(string path, IReadOnlyList<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors,
                             IReadOnlyDictionary<string, string> metadata)
    {
        var names = new HashSet<string>();
        foreach (var (name, shape, data) in tensors)
        {
            if (name == "__metadata__" || !names.Add(name)) throw new ArgumentException($"safetensors: duplicate or reserved tensor name '{name}'");
            long elements = shape.Aggregate(1L, (a, d) => d < 0 ? throw new ArgumentException($"safetensors: '{name}' has a negative dimension") : a * d);
            if (elements != data.Length) throw new ArgumentException($"safetensors: '{name}' has shape [{string.Join(",", shape)}] but {data.Length} values");
        }

        byte[] header;
        using (var ms = new MemoryStream())
        {
            using (var w = new Utf8JsonWriter(ms))
            {
                w.WriteStartObject();
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
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
            // Pad with spaces so the data starts 8-byte aligned, as the format recommends.
            while ((ms.Length & 7) != 0) ms.WriteByte((byte)' ');
            header = ms.ToArray();
        }

        string full = System.IO.Path.GetFullPath(path);
        string tmp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var f = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                f.Write(len);
                f.Write(header);
                var scratch = BitConverter.IsLittleEndian ? null : new byte[4];
                foreach (var (_, _, data) in tensors)
                {
                    if (scratch is null) f.Write(MemoryMarshal.AsBytes(data.Span));
                    else foreach (float v in data.Span) { BinaryPrimitives.WriteSingleLittleEndian(scratch, v); f.Write(scratch); }
                }
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    public static SafeTensorsFile Read(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { throw Bad(path, "file not found"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw Bad(path, $"cannot read: {e.Message.ReplaceLineEndings(" ")}"); }

        if (bytes.Length < 8) throw Bad(path, $"truncated: {bytes.Length} bytes, shorter than the 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes || (long)headerLength > bytes.Length - 8)
            throw Bad(path, $"header length {headerLength} does not fit a file of {bytes.Length} bytes");
        int dataStart = 8 + (int)headerLength;
        long dataLength = bytes.Length - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength)); }
        catch (JsonException) { throw Bad(path, "header is not valid JSON"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "header is not a JSON object");
            var metadata = new Dictionary<string, string>();
            var entries = new List<(string Name, int[] Shape, long Begin, long End)>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw Bad(path, $"metadata '{m.Name}' is not a string");
                    continue;
                }
                entries.Add(ParseEntry(path, prop));
            }
            if (entries.Select(e => e.Name).Distinct().Count() != entries.Count) throw Bad(path, "duplicate tensor names");

            // The tensors must tile the data buffer exactly: no gaps, no overlaps, nothing past the end.
            entries.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            long expected = 0;
            foreach (var e in entries)
            {
                if (e.Begin != expected) throw Bad(path, $"tensor '{e.Name}' starts at byte {e.Begin}, expected {expected} (gap or overlap)");
                expected = e.End;
            }
            if (expected != dataLength)
                throw Bad(path, expected > dataLength
                    ? $"truncated: header says {expected} data bytes, file has {dataLength}"
                    : $"{dataLength - expected} unexpected bytes after the last tensor");

            var tensors = new List<NamedTensor>(entries.Count);
            foreach (var e in entries)
            {
                var data = new float[(e.End - e.Begin) / 4];
                var src = bytes.AsSpan(dataStart + (int)e.Begin, (int)(e.End - e.Begin));
                if (BitConverter.IsLittleEndian) src.CopyTo(MemoryMarshal.AsBytes(data.AsSpan()));
                else for (int i = 0; i < data.Length; i++) data[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(4 * i)..]);
                tensors.Add(new NamedTensor(e.Name, e.Shape, data));
            }
            return new SafeTensorsFile(metadata, tensors, path);
        }
    }

    static (string, int[], long, long) ParseEntry(string path, JsonProperty prop)
    {
        var v = prop.Value;
        string name = prop.Name;
        if (v.ValueKind != JsonValueKind.Object) throw Bad(path, $"tensor '{name}' is not an object");
        if (!v.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String) throw Bad(path, $"tensor '{name}' has no dtype");
        if (dtype.GetString() != "F32") throw Bad(path, $"tensor '{name}' has dtype {dtype.GetString()}, expected F32");
        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array) throw Bad(path, $"tensor '{name}' has no shape");
        var shape = new int[shapeEl.GetArrayLength()];
        int i = 0;
        long elements = 1;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out shape[i]) || shape[i] < 0)
                throw Bad(path, $"tensor '{name}' has an invalid dimension {d}");
            elements *= shape[i++];
            if (elements > int.MaxValue) throw Bad(path, $"tensor '{name}' is too large");
        }
        if (!v.TryGetProperty("data_offsets", out var offs) || offs.ValueKind != JsonValueKind.Array || offs.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{name}' has no data_offsets [begin, end]");
        if (!offs[0].TryGetInt64(out long begin) || !offs[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Bad(path, $"tensor '{name}' has invalid data_offsets");
        if (end - begin != elements * 4)
            throw Bad(path, $"tensor '{name}' has {end - begin} bytes, its shape [{string.Join(",", shape)}] needs {elements * 4}");
        return (name, shape, begin, end);
    }

    static CheckpointFormatException Bad(string path, string what) => new($"{path}: {what}");
}
