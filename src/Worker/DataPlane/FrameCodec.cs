using System.Buffers.Binary;
using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// A chunk's frame on a data-plane connection: a 32-byte little-endian header (generation, step,
/// round, segment, part, parts, payload bytes), then the payload (the part's values in
/// <see cref="GradientCodec"/>'s encoding, which the collective checks as it decodes).
static class FrameCodec
{
    public const int HeaderBytes = 32;

    public static void Write(ChunkHeader c, int payloadBytes, Span<byte> h)
    {
        BinaryPrimitives.WriteInt32LittleEndian(h, c.Generation);
        BinaryPrimitives.WriteInt64LittleEndian(h[4..], c.Step);
        BinaryPrimitives.WriteInt32LittleEndian(h[12..], c.Round);
        BinaryPrimitives.WriteInt32LittleEndian(h[16..], c.Segment);
        BinaryPrimitives.WriteInt32LittleEndian(h[20..], c.Part);
        BinaryPrimitives.WriteInt32LittleEndian(h[24..], c.Parts);
        BinaryPrimitives.WriteInt32LittleEndian(h[28..], payloadBytes);
    }

    public static (ChunkHeader Chunk, int PayloadBytes) Read(ReadOnlySpan<byte> h) => (
        new ChunkHeader(BinaryPrimitives.ReadInt32LittleEndian(h), BinaryPrimitives.ReadInt64LittleEndian(h[4..]),
                        BinaryPrimitives.ReadInt32LittleEndian(h[12..]), BinaryPrimitives.ReadInt32LittleEndian(h[16..]),
                        BinaryPrimitives.ReadInt32LittleEndian(h[20..]), BinaryPrimitives.ReadInt32LittleEndian(h[24..])),
        BinaryPrimitives.ReadInt32LittleEndian(h[28..]));

    /// Fills `buffer` from the stream; false when the peer closed the connection first.
    public static bool ReadAll(Stream stream, Span<byte> buffer)
    {
        try { stream.ReadExactly(buffer); return true; }
        catch (EndOfStreamException) { return false; }
    }
}
