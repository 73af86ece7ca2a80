using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// One all-reduce of a worker's fixed-point gradient sum with its peers. Integer addition is
/// exact and associative, so every algorithm leaves every replica with the same total bits.
public interface IAllReduce
{
    /// Starts reducing `sums` in place for (generation, step) while this rank's contribution is
    /// still being added to it: nothing that depends on it is sent until <see cref="Ready"/>.
    void Begin(int generation, long step, long[] sums);

    /// sums[from..] now hold this rank's whole contribution (the backward pass ends with the last
    /// layers first, so the ready part grows from the end): sends whatever that allows. Returns
    /// true when `sums` holds the total.
    bool Ready(int from);

    /// Begin with the whole contribution ready; true when already complete (one worker).
    bool Start(int generation, long step, long[] sums);

    /// Applies a chunk. Returns true when `sums` now holds the total. Throws
    /// <see cref="InvalidChunkException"/> for a chunk that does not fit, which is never applied.
    bool Handle(GradientChunk chunk);
}

public sealed class InvalidChunkException(string message) : Exception(message);
