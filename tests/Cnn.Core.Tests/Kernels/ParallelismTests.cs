using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Tests.Kernels;

public class ParallelismTests
{
    /// Each block waits (up to a bound) for the other to start, so the two run on two threads when
    /// the helpers are free, then throws naming itself.
    sealed class Throwing : IBlockJob
    {
        public int Started;
        public int OnHelper;
        public int Caller = Environment.CurrentManagedThreadId;

        public void Run(int block)
        {
            Interlocked.Increment(ref Started);
            var until = DateTime.UtcNow.AddSeconds(1);
            while (Volatile.Read(ref Started) < 2 && DateTime.UtcNow < until) Thread.SpinWait(100);
            if (Environment.CurrentManagedThreadId != Caller) Interlocked.Increment(ref OnHelper);
            throw new InvalidOperationException($"block {block}");
        }
    }

    sealed class Sum(long[] into) : IBlockJob
    {
        public void Run(int block) => into[block] = block + 1;
    }

    /// A worker whose step threw on a kernel helper thread used to crash the whole process (the
    /// exception escaped the helper's loop), so it could never report why it failed. The exception
    /// now reaches the caller, and the helpers keep serving later calls.
    [Fact]
    public void An_exception_in_a_block_on_any_thread_reaches_the_caller_and_the_helpers_survive()
    {
        int saved = Parallelism.MaxThreads;
        Parallelism.MaxThreads = 2;
        try
        {
            int onHelper = 0;
            // The helpers may be busy with another test's kernel at a given moment (the call then
            // runs inline); repeat until a block has thrown on a helper thread at least once.
            for (int attempt = 0; attempt < 50 && onHelper == 0; attempt++)
            {
                var job = new Throwing();
                var e = Assert.Throws<InvalidOperationException>(() => Parallelism.For(2, Parallelism.MinWorkPerFork, job));
                Assert.Matches("^block [01]$", e.Message);
                onHelper += job.OnHelper;
            }
            Assert.True(onHelper > 0, "no block ran on a helper thread in 50 attempts");

            var sums = new long[8];
            Parallelism.For(8, Parallelism.MinWorkPerFork, new Sum(sums));
            Assert.Equal([1L, 2, 3, 4, 5, 6, 7, 8], sums);
        }
        finally { Parallelism.MaxThreads = saved; }
    }
}
