using System.Runtime.ExceptionServices;

namespace DistTrain.Cnn.Kernels;

/// A piece of parallel work cut into blocks: Run(b) for every b in [0, blocks), in any order, on
/// any thread. Kernels keep one job object per thread and refill it, so a call allocates nothing.
public interface IBlockJob
{
    void Run(int block);
}

/// How many threads the kernels may use, and the fork-join that runs their blocks. Results never
/// depend on it: every kernel splits work so that each output element is computed by one block in
/// a fixed order.
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

    // One fork at a time on a set of dedicated helper threads (Parallel.For allocated per call).
    // A call that finds the helpers busy (another training thread in this process) runs inline.
    static int _busy;
    static IBlockJob? _job;
    static int _blocks, _next, _done, _active;
    static readonly List<Thread> Helpers = [];
    static readonly SemaphoreSlim Wake = new(0);
    static readonly ManualResetEventSlim Finished = new(false);
    static ExceptionDispatchInfo? _error;   // the first block that threw, rethrown on the caller

    /// Runs job.Run(block) for block in [0, blocks), in parallel when the work is large enough.
    /// An exception thrown by a block, on whichever thread, reaches the caller once every block has
    /// ended (a helper thread must never die of it: that would take the whole process down, and a
    /// worker could not report why it failed).
    public static void For(int blocks, long totalWork, IBlockJob job)
    {
        int threads = Math.Min(_maxThreads, blocks);
        // Inside a block (a lane of a step) a kernel runs inline without touching the shared
        // counters: the lanes' kernels would otherwise compare-exchange one cache line between cores.
        if (t_inBlock || threads <= 1 || totalWork < MinWorkPerFork || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int b = 0; b < blocks; b++) job.Run(b);
            return;
        }
        try
        {
            EnsureHelpers(threads - 1);
            _blocks = blocks;
            _next = 0;
            _done = 0;
            _error = null;
            Finished.Reset();
            Volatile.Write(ref _job, job);   // published after the counters it goes with
            Wake.Release(threads - 1);
            RunBlocks(job);
            if (Volatile.Read(ref _done) < blocks) Finished.Wait();
            Interlocked.Exchange(ref _error, null)?.Throw();
        }
        finally
        {
            // No helper may still hold this job when the next call resets the counters.
            Volatile.Write(ref _job, null);
            var spin = new SpinWait();
            while (Volatile.Read(ref _active) != 0) spin.SpinOnce();
            Volatile.Write(ref _busy, 0);
        }
    }

    [ThreadStatic] static bool t_inBlock;

    static void RunBlocks(IBlockJob job)
    {
        int blocks = _blocks, b;
        t_inBlock = true;
        try
        {
            while ((b = Interlocked.Increment(ref _next) - 1) < blocks)
            {
                try { job.Run(b); }
                catch (Exception e) { Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(e), null); }
                if (Interlocked.Increment(ref _done) == blocks) Finished.Set();
            }
        }
        finally { t_inBlock = false; }
    }

    static void EnsureHelpers(int count)
    {
        while (Helpers.Count < count)
        {
            var t = new Thread(HelperLoop) { IsBackground = true, Name = $"disttrain-kernel-{Helpers.Count + 1}" };
            Helpers.Add(t);
            t.Start();
        }
    }

    static void HelperLoop()
    {
        while (true)
        {
            Wake.Wait();
            Interlocked.Increment(ref _active);
            if (Volatile.Read(ref _job) is { } job) RunBlocks(job);
            Interlocked.Decrement(ref _active);
        }
    }
}
