using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace DistTrain.Protocol;

/// Raw little-endian float payloads (model state), and the cutting of every transfer into parts
/// below the frame size. Gradient sums travel in <see cref="GradientCodec"/>'s encoding.
public static class Payload
{
    public static byte[] FromFloats(ReadOnlySpan<float> values)
    {
        var bytes = new byte[values.Length * 4];
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(values).CopyTo(bytes);
        else for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        return bytes;
    }

    public static void ToFloats(ReadOnlySpan<byte> bytes, Span<float> values)
    {
        if (bytes.Length != values.Length * 4) throw new ArgumentException($"payload of {bytes.Length} bytes for {values.Length} floats");
        if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(values));
        else for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
    }

    /// Splits [0, length) elements of `elementBytes` each into parts of at most PartBytes.
    public static int Parts(int length, int elementBytes) =>
        Math.Max(1, (int)(((long)length * elementBytes + ProtocolConfig.PartBytes - 1) / ProtocolConfig.PartBytes));

    /// The element range of part `part` of `parts` over [start, start + length).
    public static (int Start, int Length) Part(int start, int length, int part, int parts)
    {
        int a = (int)((long)length * part / parts), b = (int)((long)length * (part + 1) / parts);
        return (start + a, b - a);
    }
}
