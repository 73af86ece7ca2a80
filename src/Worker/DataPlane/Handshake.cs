using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// The opening of a data-plane connection, a challenge with the job token: the listener greets
/// with magic, version and 32 random bytes; the sender answers with magic, version, its ring path
/// and HMAC-SHA256(key, nonce ‖ path). A process without the token cannot feed chunks, and the
/// token never crosses the wire.
sealed class Handshake(string jobToken)
{
    const uint Magic = 0x50445444;   // "DTDP"
    const int Version = 1;
    const int NonceBytes = 32, GreetingBytes = 8 + NonceBytes, MacBytes = 32;

    readonly byte[] _key = SHA256.HashData(Encoding.UTF8.GetBytes("disttrain data plane\n" + jobToken));

    /// The listener's side: greets, then reads the hello. The sender's ring path when it proves it
    /// holds the job token, else null.
    public string? Challenge(Stream stream)
    {
        var nonce = RandomNumberGenerator.GetBytes(NonceBytes);
        var greeting = new byte[GreetingBytes];
        WriteVersion(greeting);
        nonce.CopyTo(greeting, 8);
        stream.Write(greeting);

        var head = new byte[12];
        if (!FrameCodec.ReadAll(stream, head) || !IsVersion(head)) return null;
        int pathLength = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(8));
        if ((uint)pathLength > ProtocolConfig.DataPlaneMaxPathBytes) return null;
        var path = new byte[pathLength];
        var mac = new byte[MacBytes];
        if (!FrameCodec.ReadAll(stream, path) || !FrameCodec.ReadAll(stream, mac)) return null;
        if (!CryptographicOperations.FixedTimeEquals(mac, Mac(nonce, path))) return null;
        return Encoding.UTF8.GetString(path);
    }

    /// The sender's side, first half: the listener's nonce. IOException when `endpoint` is not a
    /// DistTrain data plane of this version.
    public static byte[] ReadGreeting(Stream stream, string endpoint)
    {
        var greeting = new byte[GreetingBytes];
        stream.ReadExactly(greeting);
        if (!IsVersion(greeting)) throw new IOException($"{endpoint} is not a DistTrain data plane of version {Version}");
        return greeting[8..];
    }

    /// The sender's side, second half: the hello that proves the token for `nonce`.
    public void WriteHello(Stream stream, byte[] nonce, string selfPath)
    {
        var path = Encoding.UTF8.GetBytes(selfPath);
        var hello = new byte[12 + path.Length + MacBytes];
        WriteVersion(hello);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(8), path.Length);
        path.CopyTo(hello, 12);
        Mac(nonce, path).CopyTo(hello, 12 + path.Length);
        stream.Write(hello);
    }

    static void WriteVersion(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(b[4..], Version);
    }

    static bool IsVersion(ReadOnlySpan<byte> b) =>
        BinaryPrimitives.ReadUInt32LittleEndian(b) == Magic && BinaryPrimitives.ReadInt32LittleEndian(b[4..]) == Version;

    byte[] Mac(byte[] nonce, byte[] path) => HMACSHA256.HashData(_key, nonce.Concat(path).ToArray());
}
