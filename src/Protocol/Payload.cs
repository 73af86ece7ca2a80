using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace DistTrain.Protocol;

/// Raw little-endian payloads and their cutting into parts below the frame size.
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

    public static byte[] FromLongs(ReadOnlySpan<long> values)
    {
        var bytes = new byte[values.Length * 8];
        WriteLongs(values, bytes);
        return bytes;
    }

    /// Writes values as little-endian int64s into the first 8 * values.Length bytes of `bytes`.
    public static void WriteLongs(ReadOnlySpan<long> values, Span<byte> bytes)
    {
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(values).CopyTo(bytes);
        else for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes[(8 * i)..], values[i]);
    }

    /// Adds (or, with add = false, copies) little-endian int64s into target.
    public static void IntoLongs(ReadOnlySpan<byte> bytes, Span<long> target, bool add)
    {
        if (bytes.Length != target.Length * 8) throw new ArgumentException($"payload of {bytes.Length} bytes for {target.Length} int64 values");
        if (BitConverter.IsLittleEndian)
        {
            // Unaligned reinterpretation is fine for Vector loads; integer addition is exact in any order.
            var source = MemoryMarshal.Cast<byte, long>(bytes);
            if (!add) { source.CopyTo(target); return; }
            int i = 0;
            if (System.Numerics.Vector.IsHardwareAccelerated)
            {
                var vs = MemoryMarshal.Cast<long, System.Numerics.Vector<long>>(source);
                var vt = MemoryMarshal.Cast<long, System.Numerics.Vector<long>>(target);
                for (int v = 0; v < vs.Length; v++) vt[v] += vs[v];
                i = vs.Length * System.Numerics.Vector<long>.Count;
            }
            for (; i < target.Length; i++) target[i] += source[i];
            return;
        }
        for (int i = 0; i < target.Length; i++)
        {
            long v = BinaryPrimitives.ReadInt64LittleEndian(bytes[(8 * i)..]);
            target[i] = add ? target[i] + v : v;
        }
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
