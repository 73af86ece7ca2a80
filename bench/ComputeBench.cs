using System.Diagnostics;
using System.Runtime.Intrinsics;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;

namespace DistTrain.Bench;

/// Single-process compute: the FMA peak of this CPU, and training images/s of the real training
/// step (LocalTrainer: micro-batches, exact fixed-point sum, optimizer) with its achieved GFLOP/s,
/// bytes allocated per step in steady state and the peak working set.
static class ComputeBench
{
    /// Multiply-add throughput with independent accumulators (no memory traffic), per thread count:
    /// the best of three runs, because this shared machine's clock varies from second to second.
    public static double PeakGflops(int threads, TimeSpan duration) =>
        Enumerable.Range(0, 3).Max(_ => PeakOnce(threads, duration / 3));

    static double PeakOnce(int threads, TimeSpan duration)
    {
        long total = 0;
        var clock = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
        {
            long n = Vector512.IsHardwareAccelerated ? Fma512(duration) : Fma256(duration);
            Interlocked.Add(ref total, n);
        });
        return total / clock.Elapsed.TotalSeconds / 1e9;
    }

    // The accumulators live in registers only if no call sits inside their loop: every vector
    // register is caller-saved, so a clock check in the loop made the JIT keep them in memory and
    // the "peak" came out at about a third of what the GEMM kernels reach. The timed loop calls a
    // block of FMAs with no calls inside; each block is 2^16 iterations of 12 independent FMAs.
    const int BlockIterations = 1 << 16;

    static long Fma512(TimeSpan duration)
    {
        long flops = 0;
        var sink = Vector512<float>.Zero;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            sink += Fma512Block(Vector512.Create(1f));
            flops += (long)BlockIterations * 12 * Vector512<float>.Count * 2;
        }
        return sink[0] == 42f ? flops + 1 : flops;   // keeps the work alive
    }

    static long Fma256(TimeSpan duration)
    {
        long flops = 0;
        var sink = Vector256<float>.Zero;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            sink += Fma256Block(Vector256.Create(1f));
            flops += (long)BlockIterations * 12 * Vector256<float>.Count * 2;
        }
        return sink[0] == 42f ? flops + 1 : flops;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining | System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static Vector512<float> Fma512Block(Vector512<float> a0)
    {
        var a1 = a0; var a2 = a0; var a3 = a0; var a4 = a0; var a5 = a0; var a6 = a0; var a7 = a0; var a8 = a0; var a9 = a0; var a10 = a0; var a11 = a0;
        var m = Vector512.Create(0.999999f); var c = Vector512.Create(1e-7f);
        for (int i = 0; i < BlockIterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c); a2 = Vector512.FusedMultiplyAdd(a2, m, c);
            a3 = Vector512.FusedMultiplyAdd(a3, m, c); a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c); a8 = Vector512.FusedMultiplyAdd(a8, m, c);
            a9 = Vector512.FusedMultiplyAdd(a9, m, c); a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
        }
        return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining | System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static Vector256<float> Fma256Block(Vector256<float> a0)
    {
        var a1 = a0; var a2 = a0; var a3 = a0; var a4 = a0; var a5 = a0; var a6 = a0; var a7 = a0; var a8 = a0; var a9 = a0; var a10 = a0; var a11 = a0;
        var m = Vector256.Create(0.999999f); var c = Vector256.Create(1e-7f);
        for (int i = 0; i < BlockIterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c); a2 = Vector256.FusedMultiplyAdd(a2, m, c);
            a3 = Vector256.FusedMultiplyAdd(a3, m, c); a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
            a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c); a8 = Vector256.FusedMultiplyAdd(a8, m, c);
            a9 = Vector256.FusedMultiplyAdd(a9, m, c); a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
        }
        return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    }

    /// Floating-point operations of one training sample: forward, weight gradient and input
    /// gradient of the convolutions and dense layers (2 per multiply-add); element-wise layers are not counted.
    public static double FlopsPerSample(Model model)
    {
        double flops = 0;
        // The forward pass's multiply-adds as `disttrain summary` counts them (residual blocks included).
        foreach (var layer in model.Layers) flops += 2.0 * ModelSummary.MultiplyAdds(layer) * (layer.ComputeInputGradient ? 3 : 2);
        return flops;
    }

    public sealed record TrainingFigure(string Model, int Batch, int MicroBatch, int Threads, int Steps, double ImagesPerSecond,
                                        double Gflops, double BytesAllocatedPerStep, long PeakWorkingSetBytes);

    /// Trains `steps` timed steps after `warmup` steps on MNIST-shaped data.
    public static TrainingFigure Training(ModelSpec spec, int threads, int batch, int microBatch, int warmup, int steps, DatasetFolder data)
    {
        Parallelism.MaxThreads = threads;
        var plan = new TrainingPlan
        {
            Model = spec, Optimizer = new OptimizerSettings(OptimizerKinds.Parse(Presets.Recipe(spec.Name).Optimizer)), LearningRate = Presets.Recipe(spec.Name).LearningRate,
            GlobalBatch = batch, MicroBatch = microBatch, Epochs = 1000, Seed = 1, MaxSteps = warmup + steps,
        };
        var trainer = new LocalTrainer(plan, data);
        long allocatedAtStart = 0, allocated = 0;
        var clock = new Stopwatch();
        trainer.StepCompleted = r =>
        {
            if (r.Step == warmup)
            {
                allocatedAtStart = GC.GetTotalAllocatedBytes(precise: true);
                clock.Start();
            }
            else if (r.Step == warmup + steps)
            {
                clock.Stop();   // before the end-of-run evaluation
                allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedAtStart;
            }
        };
        trainer.Run();
        double imagesPerSecond = (double)steps * batch / clock.Elapsed.TotalSeconds;
        return new TrainingFigure(spec.Name, batch, microBatch, threads, steps, Math.Round(imagesPerSecond, 1),
            Math.Round(imagesPerSecond * FlopsPerSample(trainer.Model) / 1e9, 2), Math.Round((double)allocated / steps, 1),
            Process.GetCurrentProcess().PeakWorkingSet64);
    }
}
