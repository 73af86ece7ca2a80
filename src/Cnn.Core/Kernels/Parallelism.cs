namespace DistTrain.Cnn.Kernels;

/// How many threads the kernels may use. Results never depend on it: every kernel splits work
/// so that each output element is computed by one thread in a fixed order.
public static class Parallelism
{
    static int _maxThreads = Environment.ProcessorCount;

    public static int MaxThreads
    {
        get => _maxThreads;
        set => _maxThreads = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), "threads must be >= 1");
    }

    /// Below this many multiply-adds a kernel runs on the calling thread: forking costs more.
    public const long MinWorkPerFork = 1 << 17;

    /// Runs body(block) for block in [0, blocks), in parallel when the work is large enough.
    public static void For(int blocks, long totalWork, Action<int> body)
    {
        if (blocks <= 1 || _maxThreads == 1 || totalWork < MinWorkPerFork)
        {
            for (int b = 0; b < blocks; b++) body(b);
            return;
        }
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = _maxThreads }, body);
    }
}
