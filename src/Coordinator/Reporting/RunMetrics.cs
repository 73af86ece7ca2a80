using Prometheus;

namespace DistTrain.Coordinator.Reporting;

/// The run's Prometheus metrics (prometheus-net, a registry of the run's own, with the .NET
/// runtime's and the process's figures beside them): gauges of where the run stands, counters of
/// steps, images, all-reduce bytes, joins and losses, and histograms of the step, compute and
/// all-reduce times; per worker (each worker's figures reach the coordinator in its StepCompleted)
/// its images/s, busy share and compute time.
public sealed class RunMetrics
{
    readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    readonly Gauge _training, _step, _totalSteps, _epoch, _loss, _accuracy, _learningRate, _testLoss, _testAccuracy, _imagesPerSecond, _workers;
    readonly Gauge _workerImagesPerSecond, _workerBusy;
    readonly Counter _steps, _images, _allReduceBytes, _joins, _losses;
    readonly Histogram _stepSeconds, _computeSeconds, _allReduceSeconds, _workerComputeSeconds;
    readonly HashSet<string> _workerLabels = new(StringComparer.Ordinal);

    public RunMetrics(long totalSteps)
    {
        var f = Metrics.WithCustomRegistry(_registry);
        Gauge G(string name, string help, params string[] labels) => f.CreateGauge($"disttrain_{name}", help, labels);
        Counter C(string name, string help) => f.CreateCounter($"disttrain_{name}", help);
        // 1 ms to about 65 s, doubling.
        Histogram H(string name, string help, params string[] labels) =>
            f.CreateHistogram($"disttrain_{name}", help, new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 17), LabelNames = labels });
        _training = G("training", "1 while training, 0 otherwise");
        _step = G("step", "the step the run has reached (a resumed run starts at its checkpoint's)");
        _totalSteps = G("total_steps", "steps of the whole run");
        _epoch = G("epoch", "current epoch (1-based)");
        _loss = G("loss", "training loss of the last step");
        _accuracy = G("accuracy", "training accuracy of the last step");
        _learningRate = G("learning_rate", "learning rate of the last step");
        _testLoss = G("test_loss", "test loss after the last epoch");
        _testAccuracy = G("test_accuracy", "test accuracy after the last epoch");
        _imagesPerSecond = G("images_per_second", "training images per second over the last steps");
        _workers = G("workers", "workers in the last step");
        _workerImagesPerSecond = G("worker_images_per_second", "images per second each worker computed over the last steps", "worker");
        _workerBusy = G("worker_busy_ratio", "each worker's compute time over step time, over the last steps", "worker");
        _steps = C("steps_total", "steps committed by this coordinator process");
        _images = C("images_total", "training images of the steps committed by this coordinator process");
        _allReduceBytes = C("allreduce_bytes_total", "gradient payload bytes all workers sent in all-reduces");
        _joins = C("worker_joins_total", "workers that joined");
        _losses = C("worker_losses_total", "workers lost during training");
        _stepSeconds = H("step_seconds", "wall time of a step, dispatch to the last worker's report");
        _computeSeconds = H("compute_seconds", "compute time of a step, averaged over its workers");
        _allReduceSeconds = H("allreduce_seconds", "all-reduce time of a step, averaged over its workers");
        _workerComputeSeconds = H("worker_compute_seconds", "each worker's compute time of a step", "worker");
        DotNetStats.Register(_registry);
        _totalSteps.Set(totalSteps);
        _loss.Set(double.NaN); _accuracy.Set(double.NaN); _testLoss.Set(double.NaN); _testAccuracy.Set(double.NaN);
    }

    public void Step(long step, int epoch, double loss, double accuracy, double learningRate, double wall, double compute, double reduce,
                     long allReduceBytes, IReadOnlyList<(string Name, long Samples, double Compute)> workers)
    {
        _training.Set(1);
        _step.Set(step); _epoch.Set(epoch + 1); _loss.Set(loss); _accuracy.Set(accuracy); _learningRate.Set(learningRate);
        _workers.Set(workers.Count);
        _steps.Inc();
        _images.Inc(workers.Sum(w => w.Samples));
        _allReduceBytes.Inc(allReduceBytes);
        _stepSeconds.Observe(wall); _computeSeconds.Observe(compute); _allReduceSeconds.Observe(reduce);
        foreach (var w in workers) _workerComputeSeconds.WithLabels(w.Name).Observe(w.Compute);
    }

    /// The figures over the last steps, run-wide and per worker; a worker gone from the run is
    /// removed from the per-worker metrics.
    public void Rates(double imagesPerSecond, IReadOnlyList<(string Name, double ImagesPerSecond, double Busy)> workers)
    {
        _imagesPerSecond.Set(imagesPerSecond);
        foreach (var w in workers)
        {
            _workerImagesPerSecond.WithLabels(w.Name).Set(w.ImagesPerSecond);
            _workerBusy.WithLabels(w.Name).Set(w.Busy);
        }
        foreach (var gone in _workerLabels.Except(workers.Select(w => w.Name)).ToList())
        {
            _workerImagesPerSecond.RemoveLabelled(gone);
            _workerBusy.RemoveLabelled(gone);
            _workerComputeSeconds.RemoveLabelled(gone);
            _workerLabels.Remove(gone);
        }
        foreach (var w in workers) _workerLabels.Add(w.Name);
    }

    public void Epoch(double testLoss, double testAccuracy) { _testLoss.Set(testLoss); _testAccuracy.Set(testAccuracy); }
    public void Joined() => _joins.Inc();
    public void Lost() => _losses.Inc();
    public void Finished() => _training.Set(0);

    /// The Prometheus text exposition format (0.0.4).
    public Task WriteAsync(Stream output, CancellationToken cancel) => _registry.CollectAndExportAsTextAsync(output, cancel);

    public string Text()
    {
        using var buffer = new MemoryStream();
        WriteAsync(buffer, CancellationToken.None).GetAwaiter().GetResult();
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
