using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace DistTrain.Cnn.Training;

/// Hashes of a float32 vector's little-endian bytes. SHA-256 names a result (reports,
/// checkpoints); XxHash128 is the per-step check that replicas agree, where SHA-256 of mnist-cnn's
/// 4.8 MB took 3.2 ms of every step and XxHash128 takes 0.4 ms. The check guards against
/// accidental divergence between authenticated workers, not against forgery.
public static class ParameterHash
{
    public static string Sha256Hex(ReadOnlySpan<float> values) => Convert.ToHexStringLower(SHA256.HashData(LittleEndianBytes(values)));

    public static string ReplicaHex(ReadOnlySpan<float> values) => Convert.ToHexStringLower(XxHash128.Hash(LittleEndianBytes(values)));

    /// The little-endian bytes of a float vector: a view on little-endian machines, a copy otherwise.
    public static ReadOnlySpan<byte> LittleEndianBytes(ReadOnlySpan<float> values)
    {
        if (BitConverter.IsLittleEndian) return MemoryMarshal.AsBytes(values);
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        return bytes;
    }
}
