namespace DistTrain.Cnn.Training;

/// Where a replica's exact gradient sum of a step meets the other replicas' sums, kept apart from
/// the model as PyTorch DDP keeps its reducer apart: nothing to exchange in one process
/// (<see cref="LocalExchange"/>), a ring or a star between workers (src/Worker/Collectives).
public interface IGradientExchange
{
    /// Starts exchanging `sums` for `step` while this replica's contribution is still being added
    /// to it: nothing that depends on that contribution leaves before <see cref="Ready"/> says so.
    /// `sums` is all zero here and the replica only adds into it, so a peer's part may be added
    /// into a slice before the slice is ready.
    void Begin(long step, long[] sums);

    /// sums[from..] now hold this replica's whole contribution (a backward pass finishes the last
    /// layers first, so the ready part grows from the end). Returns true once `sums` holds the
    /// total of every replica; otherwise the rest arrives later, through the transport.
    bool Ready(int from);
}

/// One process holds the whole global batch: its sum is already the total.
public sealed class LocalExchange : IGradientExchange
{
    public static readonly LocalExchange Instance = new();

    public void Begin(long step, long[] sums) { }

    public bool Ready(int from) => from == 0;
}
