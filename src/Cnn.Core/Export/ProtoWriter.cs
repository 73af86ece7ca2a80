using System.Buffers.Binary;
using System.Text;

namespace DistTrain.Cnn.Export;

/// The Protocol Buffers wire format, as much of it as an ONNX model and a TensorBoard event need:
/// varints (wire type 0), 64-bit doubles (1), length-delimited bytes, strings and nested messages
/// (2) and 32-bit floats (5). A nested message
/// is written into a writer of its own and added whole, so every length is known when written.
public sealed class ProtoWriter
{
    readonly MemoryStream _bytes = new();

    public long Length => _bytes.Length;
    public byte[] ToArray() => _bytes.ToArray();

    void Tag(int field, int wireType) => Varint((ulong)((field << 3) | wireType));

    void Varint(ulong value)
    {
        while (value >= 0x80)
        {
            _bytes.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        _bytes.WriteByte((byte)value);
    }

    /// int64 and int32 fields, and enums (negative values take ten bytes, as the format says).
    public ProtoWriter Int(int field, long value)
    {
        Tag(field, 0);
        Varint((ulong)value);
        return this;
    }

    public ProtoWriter Float(int field, float value)
    {
        Tag(field, 5);
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(b, value);
        _bytes.Write(b);
        return this;
    }

    public ProtoWriter Double(int field, double value)
    {
        Tag(field, 1);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteDoubleLittleEndian(b, value);
        _bytes.Write(b);
        return this;
    }

    public ProtoWriter Bytes(int field, ReadOnlySpan<byte> value)
    {
        Tag(field, 2);
        Varint((ulong)value.Length);
        _bytes.Write(value);
        return this;
    }

    public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoWriter Message(int field, ProtoWriter message) => Bytes(field, message._bytes.GetBuffer().AsSpan(0, (int)message._bytes.Length));
}
