using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// Where a collective's outgoing chunks go: a header and the values of its part. The sink decides
/// how the encoded values travel (an exact message, or a frame on a pooled buffer of the data
/// plane), so a collective never knows about buffers.
public interface IChunkSink
{
    /// `values` are valid only during the call: a sink that keeps them copies them. Returns the
    /// bytes of their encoding, what the chunk's payload weighs on the wire.
    int Send(ChunkHeader header, ReadOnlySpan<long> values);
}

/// Each chunk as an exact <see cref="GradientChunk"/> message (over Akka.Remote, or into a test's list).
public sealed class MessageSink(Action<GradientChunk> send) : IChunkSink
{
    public int Send(ChunkHeader header, ReadOnlySpan<long> values)
    {
        var payload = GradientCodec.Encode(values);
        send(GradientChunk.Of(header, payload));
        return payload.Length;
    }
}
