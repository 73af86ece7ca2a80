namespace DistTrain.TestSupport;

/// How long a test waits for a condition before it fails: generous, because four test runs may
/// share two CPUs; a passing test never waits that long, it waits for the condition.
public static class Patience
{
    /// A training run (in-process cluster or processes), or a whole all-reduce of a large vector, to end.
    public static readonly TimeSpan Training = TimeSpan.FromMinutes(3);
    /// One answer: an actor's reply, a step of a small ring, a chunk or a log line of the data plane.
    public static readonly TimeSpan Reply = TimeSpan.FromSeconds(30);
    /// A helper process (openssl, a refused worker) to exit.
    public static readonly TimeSpan Helper = TimeSpan.FromMinutes(1);
}
