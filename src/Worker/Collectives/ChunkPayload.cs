using DistTrain.Protocol;

namespace DistTrain.Worker.Collectives;

/// A received chunk's payload into its part of the sum, for every collective and the star's hub.
public static class ChunkPayload
{
    /// Adds (or, with add = false, copies) the payload's values into `part`. GradientCodec checks the
    /// payload whole before it applies anything, so a malformed one is an InvalidChunkException that
    /// changed nothing.
    public static void Apply(ChunkHeader chunk, ReadOnlySpan<byte> payload, Span<long> part, bool add)
    {
        try { GradientCodec.Decode(payload, part, add); }
        catch (InvalidDataException e) { throw new InvalidChunkException($"chunk part {chunk.Part} of round {chunk.Round}: {e.Message}"); }
    }
}
