using System.Buffers.Binary;
using System.Text;
using DistTrain.Cnn.Checkpoints;

namespace DistTrain.Cnn.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-st-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string name) => Path.Combine(_dir, name);

    static readonly Dictionary<string, string> Meta = new() { ["step"] = "12", ["note"] = "ünïcode" };

    [Fact]
    public void Round_trip_is_bitwise_including_special_values()
    {
        float[] a = [1.5f, -0f, float.Epsilon, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(0x7FC00123)];
        float[] scalar = [42f];
        SafeTensorsFile.Write(P("f"), [("a", [2, 3], a), ("s", [], scalar), ("empty", [0], Array.Empty<float>())], Meta);
        var f = SafeTensorsFile.Read(P("f"));
        Assert.Equal(Meta, f.Metadata);
        Assert.Equal(a.Select(BitConverter.SingleToInt32Bits), f["a"].Data.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal([2, 3], f["a"].Shape);
        Assert.Equal([42f], f["s"].Data);
        Assert.Empty(f["s"].Shape);
        Assert.Empty(f["empty"].Data);
        Assert.Equal(["a", "s", "empty"], f.Tensors.Select(t => t.Name));
        Assert.Single(Directory.GetFiles(_dir));   // no temporary file left behind
    }

    [Fact]
    public void Layout_matches_the_specification_byte_for_byte()
    {
        SafeTensorsFile.Write(P("f"), [("w", [2], new[] { 1f, 2f })], new Dictionary<string, string>());
        var bytes = File.ReadAllBytes(P("f"));
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n).TrimEnd(' ');
        Assert.Equal("""{"__metadata__":{},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", header);
        Assert.Equal(8 + (int)n + 8, bytes.Length);
        Assert.Equal(1f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(8 + (int)n)));
        Assert.Equal(2f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(12 + (int)n)));
    }

    /// A file with a hand-written header and `data` bytes of payload.
    string Raw(string header, int data, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        File.WriteAllBytes(P("bad"), bytes);
        return P("bad");
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, "truncated: header says 8 data bytes, file has 4")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "4 unexpected bytes after the last tensor")]
    [InlineData("""{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}""", 4, "dtype F16, expected F32")]
    [InlineData("""{"a":{"shape":[2],"data_offsets":[0,8]}}""", 8, "has no dtype")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "shape [3] needs 12")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}""", 8, "invalid dimension")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "gap or overlap")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "starts at byte 4, expected 0")]
    [InlineData("""{"__metadata__":{"x":1}}""", 0, "metadata 'x' is not a string")]
    [InlineData("""[1,2]""", 0, "header is not a JSON object")]
    [InlineData("""{"a": """, 0, "header is not valid JSON")]
    public void Malformed_files_give_one_line_naming_the_file(string header, int data, string expected)
    {
        var path = Raw(header, data);
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Short_file_absurd_header_length_and_missing_file()
    {
        File.WriteAllBytes(P("s"), [1, 2, 3]);
        Assert.Contains("truncated", Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(P("s"))).Message);
        var path = Raw("{}", 0, declaredLength: 1UL << 40);
        Assert.Contains("header length", Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(path)).Message);
        Assert.Contains("file not found", Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(P("nope"))).Message);
    }

    [Fact]
    public void A_rejected_write_leaves_the_existing_file_untouched()
    {
        SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f })], Meta);
        var before = File.ReadAllBytes(P("f"));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [3], new[] { 1f, 2f })], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f }), ("a", [1], new[] { 2f })], Meta));
        Assert.Equal(before, File.ReadAllBytes(P("f")));
        Assert.Single(Directory.GetFiles(_dir));
    }
}
