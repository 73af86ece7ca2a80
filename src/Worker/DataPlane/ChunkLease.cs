using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// A gradient chunk on a buffer rented from <see cref="ChunkBuffers"/>, and that buffer's one
/// owner: Dispose gives it back exactly once (again does nothing), and its bytes cannot be read
/// after. A received chunk's lease passes to whoever handles it (the worker actor disposes it once
/// the chunk is handled or dropped); a sent chunk's lease stays with its <see cref="Link"/>.
public sealed class ChunkLease : IDisposable
{
    readonly ChunkBuffers _buffers;
    byte[]? _buffer;

    public ChunkHeader Header { get; }
    /// The payload's length in bytes (the rented buffer may be longer).
    public int Length { get; }

    ChunkLease(ChunkBuffers buffers, ChunkHeader header, byte[] buffer, int length)
    {
        _buffers = buffers;
        Header = header;
        Length = length;
        _buffer = buffer;
    }

    /// A lease of `length` bytes for a received payload, filled through <see cref="Writable"/>.
    internal static ChunkLease Rent(ChunkBuffers buffers, ChunkHeader header, int length) => new(buffers, header, buffers.Rent(length), length);

    /// A lease holding `values` in <see cref="GradientCodec"/>'s encoding, on a buffer of the
    /// worst case (a part's fits the pool's largest: <see cref="GradientCodec.ValuesPerPart"/>).
    public static ChunkLease Of(ChunkBuffers buffers, ChunkHeader header, ReadOnlySpan<long> values)
    {
        var buffer = buffers.Rent(GradientCodec.MaxEncodedBytes(values.Length));
        return new(buffers, header, buffer, GradientCodec.Encode(values, buffer));
    }

    public ReadOnlySpan<byte> Bytes => Writable;

    internal Span<byte> Writable => (_buffer ?? throw new ObjectDisposedException(nameof(ChunkLease))).AsSpan(0, Length);

    /// An exact copy for Akka.Remote: a pooled buffer never reaches a serializer.
    public GradientChunk ToMessage() => GradientChunk.Of(Header, Bytes.ToArray());

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer) _buffers.Return(buffer);
    }
}
