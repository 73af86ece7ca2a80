using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// One all-reduce of a worker's fixed-point gradient sum with its peers. Integer addition is
/// exact and associative, so every algorithm leaves every replica with the same total bits.
public interface IAllReduce
{
    /// Starts reducing `sums` in place for (generation, step); true when already complete (one worker).
    bool Start(int generation, long step, long[] sums);

    /// Applies a chunk. Returns true when `sums` now holds the total. Throws
    /// <see cref="InvalidChunkException"/> for a chunk that does not fit, which is never applied.
    bool Handle(GradientChunk chunk);
}

public sealed class InvalidChunkException(string message) : Exception(message);
