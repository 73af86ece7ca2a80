using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace DistTrain.Cnn.Training;

/// SHA-256 of a float32 vector's little-endian bytes: the identity of a replica's parameters.
public static class ParameterHash
{
    public static string Sha256Hex(ReadOnlySpan<float> values) => Convert.ToHexStringLower(SHA256.HashData(LittleEndianBytes(values)));

    /// The little-endian bytes of a float vector: a view on little-endian machines, a copy otherwise.
    public static ReadOnlySpan<byte> LittleEndianBytes(ReadOnlySpan<float> values)
    {
        if (BitConverter.IsLittleEndian) return MemoryMarshal.AsBytes(values);
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        return bytes;
    }
}
