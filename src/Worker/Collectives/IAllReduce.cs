using DistTrain.Cnn.Training;
using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// One generation's all-reduce of a worker's fixed-point gradient sum with its peers, reducing
/// `sums` in place (Begin and Ready: <see cref="IGradientExchange"/>). Integer addition is exact
/// and associative, so every algorithm leaves every replica with the same total bits.
public interface IAllReduce : IGradientExchange
{
    /// Begin with the whole contribution ready; true when already complete (one worker).
    bool Start(long step, long[] sums)
    {
        Begin(step, sums);
        return Ready(0);
    }

    /// Applies a chunk: its header and payload (its part's values in <see cref="GradientCodec"/>'s
    /// encoding). Returns true when `sums` now holds the total. Throws <see cref="InvalidChunkException"/>
    /// for a chunk that does not fit or does not decode, which is never applied. The payload is read
    /// during the call only: its owner may reuse it after.
    bool Handle(ChunkHeader header, ReadOnlySpan<byte> payload);

    /// The payload bytes this rank has sent since Begin (its chunks' encoded values; frame headers
    /// and message envelopes not counted), for the step's report.
    long SentBytes { get; }
}

public static class AllReduceMessages
{
    /// Applies a chunk that came as an Akka message.
    public static bool Handle(this IAllReduce reduce, GradientChunk chunk) => reduce.Handle(chunk.Header, chunk.Payload);
}

public sealed class InvalidChunkException(string message) : Exception(message);
