using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using DistTrain.Cnn.Checkpoints;

namespace DistTrain.Cnn.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-st-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string name) => Path.Combine(_dir, name);
    static readonly Dictionary<string, string> NoMeta = [];
    static readonly Dictionary<string, string> Meta = new()
    {
        ["step"] = "12", ["note"] = "ünïcode \"quoted\" <tag> \n newline", ["model"] = """{"layers":[1,2]}""", [""] = "",
    };

    static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Fact]
    public void Round_trip_is_bitwise_including_special_values()
    {
        float[] a =
        [
            1.5f, -0f, 0f, float.Epsilon, -float.Epsilon, BitConverter.Int32BitsToSingle(0x007FFFFF),   // subnormals
            float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue,
            BitConverter.Int32BitsToSingle(0x7FC00123), BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001)),  // NaN payloads
        ];
        SafeTensorsFile.Write(P("f"), [("a", [3, 4], a), ("s", [], new[] { 42f }), ("empty", [0], Array.Empty<float>()),
                                       ("empty3d", [3, 0, 2], Array.Empty<float>())], Meta);
        var f = SafeTensorsFile.Read(P("f"));

        Assert.Equal(Meta, f.Metadata);
        Assert.Equal(["a", "s", "empty", "empty3d"], f.Tensors.Select(t => t.Name));
        Assert.Equal(Bits(a), Bits(f["a"].Data));
        Assert.Equal([3, 4], f["a"].Shape);
        Assert.Equal([42f], f["s"].Data);
        Assert.Empty(f["s"].Shape);
        Assert.Empty(f["empty"].Data);
        Assert.Equal([3, 0, 2], f["empty3d"].Shape);
        Assert.Equal(P("f"), f.Path);
        Assert.Single(Directory.GetFiles(_dir));   // no temporary file left behind
    }

    [Fact]
    public void Slices_of_one_flat_vector_are_written_in_the_given_order()
    {
        var flat = Enumerable.Range(0, 1 << 20).Select(i => i * 0.5f - 7f).ToArray();
        var memory = flat.AsMemory();
        SafeTensorsFile.Write(P("f"), [("tail", [4, 8], memory[^32..]), ("head", [(1 << 20) - 32], memory[..^32])], NoMeta);
        var f = SafeTensorsFile.Read(P("f"));
        Assert.Equal(["tail", "head"], f.Tensors.Select(t => t.Name));
        Assert.Equal(flat[^32..], f["tail"].Data);
        Assert.Equal(flat[..^32], f["head"].Data);
        Assert.Empty(f.Metadata);
    }

    [Fact]
    public void Empty_tensors_at_shared_offsets_keep_their_order()
    {
        SafeTensorsFile.Write(P("f"), [("e1", [0], Array.Empty<float>()), ("x", [1], new[] { 1f }),
                                       ("e2", [0], Array.Empty<float>()), ("e3", [2, 0], Array.Empty<float>())], NoMeta);
        Assert.Equal(["e1", "x", "e2", "e3"], SafeTensorsFile.Read(P("f")).Tensors.Select(t => t.Name));
    }

    [Fact]
    public void No_tensors_at_all_is_a_valid_file()
    {
        SafeTensorsFile.Write(P("f"), [], Meta);
        var f = SafeTensorsFile.Read(P("f"));
        Assert.Empty(f.Tensors);
        Assert.Equal(Meta, f.Metadata);
    }

    [Fact]
    public void Layout_matches_the_specification_byte_for_byte()
    {
        SafeTensorsFile.Write(P("f"), [("w", [2], new[] { 1f, -2f }), ("b", [], new[] { 0.25f })],
                              new Dictionary<string, string> { ["k"] = "v" });

        const string json = """{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}""";
        Assert.Equal(132, json.Length);   // padded with 4 spaces to 136
        var expected = new List<byte> { 136, 0, 0, 0, 0, 0, 0, 0 };
        expected.AddRange(Encoding.UTF8.GetBytes(json + "    "));
        expected.AddRange([0x00, 0x00, 0x80, 0x3F]);   // 1.0f little-endian
        expected.AddRange([0x00, 0x00, 0x00, 0xC0]);   // -2.0f
        expected.AddRange([0x00, 0x00, 0x80, 0x3E]);   // 0.25f
        Assert.Equal(expected, File.ReadAllBytes(P("f")));
    }

    [Fact]
    public void Reads_a_hand_built_file_from_another_writer()
    {
        // No __metadata__, entries listed out of data order, whitespace, an unknown extra field.
        var path = Raw("""
            { "second": {"shape": [1], "dtype": "F32", "data_offsets": [8, 12], "extra": 1},
              "first":  {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]} }
            """, [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40]);
        var f = SafeTensorsFile.Read(path);
        Assert.Equal(["first", "second"], f.Tensors.Select(t => t.Name));
        Assert.Equal([1f, 2f], f["first"].Data);
        Assert.Equal([2, 1], f["first"].Shape);
        Assert.Equal([3f], f["second"].Data);
        Assert.Empty(f.Metadata);
    }

    [Fact]
    public void ReadHeader_gives_metadata_names_and_shapes_in_data_order()
    {
        SafeTensorsFile.Write(P("f"), [("w", [2, 3], new float[6]), ("s", [], new[] { 1f })], Meta);
        var h = SafeTensorsFile.ReadHeader(P("f"));
        Assert.Equal(Meta, h.Metadata);
        Assert.Equal([new TensorInfo("w", [2, 3]).Name, "s"], h.Tensors.Select(t => t.Name));
        Assert.Equal([2, 3], h["w"].Shape);
        Assert.Equal(6, h["w"].ElementCount);
        Assert.Equal(1, h["s"].ElementCount);
        Assert.True(h.Contains("s"));
        Assert.False(h.Contains("x"));
    }

    [Fact]
    public void A_missing_tensor_is_a_format_error_naming_the_file()
    {
        SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f })], NoMeta);
        var f = SafeTensorsFile.Read(P("f"));
        Assert.True(f.Contains("a"));
        Assert.False(f.Contains("b"));
        Assert.Equal($"{P("f")}: no tensor 'b'", Assert.Throws<CheckpointFormatException>(() => f["b"]).Message);
        Assert.Equal($"{P("f")}: no tensor 'b'", Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.ReadHeader(P("f"))["b"]).Message);
    }

    /// A file with a length prefix (the header's byte count unless `declaredLength`), the header, then `data`.
    string Raw(string header, byte[] data, ulong? declaredLength = null) => RawBytes(Encoding.UTF8.GetBytes(header), data, declaredLength);

    string RawBytes(byte[] header, byte[] data, ulong? declaredLength = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        File.WriteAllBytes(P("bad"), bytes);
        return P("bad");
    }

    /// Both readers must reject the file with a single line that starts with its path.
    static void AssertRejected(string path, string expected)
    {
        foreach (Action read in new Action[] { () => SafeTensorsFile.Read(path), () => SafeTensorsFile.ReadHeader(path) })
        {
            var e = Assert.Throws<CheckpointFormatException>(read);
            Assert.StartsWith(path + ": ", e.Message);
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.DoesNotContain('\r', e.Message);
        }
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, "truncated: header says 8 data bytes, file has 4")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "4 unexpected bytes after the last tensor")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 0, "truncated: header says 8 data bytes, file has 0")]
    [InlineData("""{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}""", 2, "tensor 'a' has dtype F8_E4M3; expected one of F64, F32, F16, BF16")]
    [InlineData("""{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'a' has 8 bytes, its shape [2] needs 4")]
    [InlineData("""{"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'a' has no dtype")]
    [InlineData("""{"a":{"shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'a' has no dtype")]
    [InlineData("""{"a":{"dtype":"F32","data_offsets":[0,8]}}""", 8, "tensor 'a' has no shape")]
    [InlineData("""{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}""", 8, "tensor 'a' has no shape")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2]}}""", 8, "tensor 'a' has no data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}""", 8, "tensor 'a' has no data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "tensor 'a' has 8 bytes, its shape [3] needs 12")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}""", 8, "tensor 'a' has an invalid dimension -1")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8, "invalid dimension 2.5")]
    [InlineData("""{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}""", 8, "invalid dimension")]
    [InlineData("""{"a":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,8]}}""", 8, "more than")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "tensor 'b' starts at byte 4, expected 8 (gap or overlap)")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "starts at byte 4, expected 0")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, "tensor 'b' starts at byte 8, expected 4")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[1000000,1000004]}}""", 4, "starts at byte 1000000")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "duplicate entry 'a'")]
    [InlineData("""{"__metadata__":{},"__metadata__":{}}""", 0, "duplicate entry '__metadata__'")]
    [InlineData("""{"__metadata__":{"x":"1","x":"2"}}""", 0, "duplicate metadata key 'x'")]
    [InlineData("""{"__metadata__":{"x":1}}""", 0, "metadata 'x' is not a string")]
    [InlineData("""{"__metadata__":{"x":null}}""", 0, "metadata 'x' is not a string")]
    [InlineData("""{"__metadata__":["x"]}""", 0, "__metadata__ is not an object")]
    [InlineData("""{"a":[1]}""", 0, "tensor 'a' is not an object")]
    [InlineData("""{"a\nb":[1]}""", 0, """tensor 'a\u000ab' is not an object""")]
    [InlineData("""[1,2]""", 0, "header is not a JSON object")]
    [InlineData("""null""", 0, "header is not a JSON object")]
    [InlineData("""{"a": """, 0, "header is not valid JSON")]
    [InlineData("""{"a":1,}""", 0, "header is not valid JSON")]
    [InlineData("", 0, "header is not valid JSON")]
    public void Malformed_files_give_one_line_naming_the_file(string header, int data, string expected) =>
        AssertRejected(Raw(header, new byte[data]), expected);

    [Fact]
    public void Invalid_utf8_in_the_header_is_a_format_error()
    {
        byte[] header = [.. "{\"a"u8, 0xFF, .. "\":{}}"u8];
        AssertRejected(RawBytes(header, []), "header is not valid UTF-8");
    }

    [Fact]
    public void Short_files_and_bad_header_lengths()
    {
        File.WriteAllBytes(P("s"), [1, 2, 3]);
        AssertRejected(P("s"), "truncated: 3 bytes, shorter than the 8-byte header length");
        File.WriteAllBytes(P("s"), []);
        AssertRejected(P("s"), "truncated: 0 bytes");
        AssertRejected(Raw("{}", [], declaredLength: 1UL << 40), "header length 1099511627776 is absurd");
        AssertRejected(Raw("{}", [], declaredLength: ulong.MaxValue), "is absurd");
        AssertRejected(Raw("{}", [], declaredLength: 3), "truncated: header length 3 but only 2 bytes follow it");
    }

    [Fact]
    public void A_truncated_checkpoint_is_rejected()
    {
        SafeTensorsFile.Write(P("f"), [("w", [100], new float[100])], Meta);
        var bytes = File.ReadAllBytes(P("f"));
        File.WriteAllBytes(P("f"), bytes[..^10]);
        AssertRejected(P("f"), "truncated: header says 400 data bytes, file has 390");
        File.WriteAllBytes(P("f"), bytes[..20]);
        AssertRejected(P("f"), "truncated: header length");
    }

    [Fact]
    public void Missing_files_and_directories_are_format_errors()
    {
        AssertRejected(P("nope"), "file not found");
        AssertRejected(Path.Combine(_dir, "no-dir", "f"), "file not found");
        AssertRejected(_dir, "cannot read");
    }

    [Fact]
    public void A_rejected_write_leaves_the_existing_file_untouched()
    {
        SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f })], Meta);
        var before = File.ReadAllBytes(P("f"));

        Assert.Contains("shape [3] but 2 values", Assert.Throws<ArgumentException>(() =>
            SafeTensorsFile.Write(P("f"), [("a", [3], new[] { 1f, 2f })], Meta)).Message);
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [], Array.Empty<float>())], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f }), ("a", [1], new[] { 2f })], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("__metadata__", [1], new[] { 1f })], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [-1, -2], new[] { 1f, 2f })], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [int.MaxValue, int.MaxValue, int.MaxValue], new[] { 1f })], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("lone\ud800", [1], new[] { 1f })], Meta));
        Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f })], new Dictionary<string, string> { ["k"] = "\udc00" }));

        Assert.Equal(before, File.ReadAllBytes(P("f")));
        Assert.Single(Directory.GetFiles(_dir));
    }

    /// Memory whose span cannot be taken: the write fails after the temporary file has been partly written.
    sealed class FailingMemory(int length) : MemoryManager<float>
    {
        public override Span<float> GetSpan() => throw new IOException("disk on fire");
        public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException();
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
        public override Memory<float> Memory => CreateMemory(length);
    }

    [Fact]
    public void A_write_failing_midway_removes_its_temporary_file_and_keeps_the_old_one()
    {
        SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f })], Meta);
        var before = File.ReadAllBytes(P("f"));
        using var failing = new FailingMemory(4);

        var e = Assert.Throws<IOException>(() =>
            SafeTensorsFile.Write(P("f"), [("ok", [1000], new float[1000]), ("bad", [4], failing.Memory)], Meta));
        Assert.Equal("disk on fire", e.Message);
        Assert.Equal(before, File.ReadAllBytes(P("f")));
        Assert.Equal([P("f")], Directory.GetFiles(_dir));
    }

    [Fact]
    public void Writing_into_a_missing_directory_fails_without_leftovers()
    {
        Assert.Throws<DirectoryNotFoundException>(() => SafeTensorsFile.Write(Path.Combine(_dir, "no-dir", "f"), [("a", [1], new[] { 1f })], Meta));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Overwriting_replaces_the_previous_checkpoint()
    {
        SafeTensorsFile.Write(P("f"), [("a", [1], new[] { 1f })], Meta);
        SafeTensorsFile.Write(P("f"), [("b", [2], new[] { 2f, 3f })], NoMeta);
        var f = SafeTensorsFile.Read(P("f"));
        Assert.Equal(["b"], f.Tensors.Select(t => t.Name));
        Assert.Empty(f.Metadata);
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void Messages_are_escaped_to_one_line()
    {
        var e = new CheckpointFormatException("x.safetensors: tensor 'a\r\nb\u2028' bad");
        Assert.Equal("""x.safetensors: tensor 'a\u000d\u000ab\u2028' bad""", e.Message);
    }
}
