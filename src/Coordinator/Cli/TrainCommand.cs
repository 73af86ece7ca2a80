using System.Diagnostics;
using System.Globalization;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Reporting;

namespace DistTrain.Coordinator.Cli;

/// disttrain train: trains a model and writes the report, metrics and checkpoints asked for.
public static class TrainCommand
{
    static readonly HashSet<string> ValueOptions =
    [
        "--data", "--model", "--epochs", "--batch", "--micro-batch", "--lr", "--optimizer", "--momentum", "--weight-decay",
        "--schedule", "--warmup", "--loss", "--workers", "--seed", "--max-steps", "--checkpoint-dir",
        "--metrics", "--report", "--threads",
    ];
    static readonly HashSet<string> Flags = ["--in-process", "--resume", "--nesterov"];

    public const string Usage =
        """
        disttrain train [options]
          --data DIR            dataset folder with the four IDX files (default: data/mnist, fetched if absent)
          --model NAME|FILE     lenet5 (default), mnist-cnn, or a model FILE.json
          --epochs E            passes over the training set (default 2)
          --batch B             global batch size (default 64)
          --micro-batch M       unit of work whose gradients are summed exactly (default 16)
          --lr X                peak learning rate (default 0.03)
          --optimizer KIND      sgd | momentum (default) | adam | adamw
          --momentum M          momentum factor (default 0.9); --nesterov for Nesterov momentum
          --weight-decay W      weight decay (default 0)
          --schedule S          cosine (default) | cosine:MIN | constant | step:EVERY:GAMMA
          --warmup STEPS        linear learning-rate warm-up (default: 5% of the run's steps)
          --loss L              cross-entropy (default) | mse
          --seed S              seed of initialisation, shuffling and dropout (default 1)
          --max-steps K         stop after K steps
          --threads T           compute threads (default: all cores)
          --workers N           worker count (only 1 in this version)
          --checkpoint-dir DIR  save a checkpoint after every epoch (newest 3 kept); --resume continues from it
          --metrics FILE.jsonl  per-step and per-epoch metrics as JSON lines
          --report FILE.json    summary report at the end
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        var a = new Arguments(args, ValueOptions, Flags);
        int workers = a.Int("--workers", 1, min: 1, max: 1024);
        if (workers != 1)
            throw new UsageException($"--workers: this version trains in one process only (--workers 1); got {workers}");
        Parallelism.MaxThreads = a.Int("--threads", Environment.ProcessorCount, min: 1, max: 1024);

        var plan = new TrainingPlan
        {
            Model = ResolveModel(a.String("--model", "lenet5")),
            Optimizer = new OptimizerSettings(
                Kind: a.Choice("--optimizer", "momentum", OptimizerSettings.Kinds),
                Momentum: a.Double("--momentum", 0.9, 0, 1, minExclusive: false),
                Nesterov: a.Flag("--nesterov"),
                WeightDecay: a.Double("--weight-decay", 0, 0, 1)),
            LearningRate = a.Double("--lr", 0.03, 0, double.MaxValue, minExclusive: true),
            Schedule = a.String("--schedule", "cosine"),
            Loss = a.Choice("--loss", "cross-entropy", ["cross-entropy", "mse"]),
            Epochs = a.Int("--epochs", 2, min: 1, max: 100_000),
            GlobalBatch = a.Int("--batch", 64, min: 1, max: 1 << 20),
            MicroBatch = a.Int("--micro-batch", 16, min: 1, max: 1 << 20),
            Seed = a.ULong("--seed", 1),
            MaxSteps = a.Long("--max-steps", min: 1),
        };
        string? checkpointDir = a.String("--checkpoint-dir");
        bool resume = a.Flag("--resume");
        if (resume && checkpointDir is null) throw new UsageException("--resume needs --checkpoint-dir DIR");
        string? metricsPath = a.String("--metrics"), reportPath = a.String("--report");

        long? warmup = a.Long("--warmup", min: 0);
        var data = DataLocator.Load(a.String("--data"), output);
        // Default warm-up: the first 5% of the run, which keeps the early high-rate steps stable.
        plan = plan with { WarmupSteps = warmup ?? plan.TotalSteps(data.Train.Count) / 20 };
        if (data.Train.SampleSize != plan.Model.Input.Aggregate(1, (x, y) => x * y))
            throw new UsageException($"--model {plan.Model.Name}: expects {string.Join("x", plan.Model.Input)} inputs, {data.Name} has {data.Train.Height}x{data.Train.Width}");
        try { plan.CreateSchedule(data.Train.Count); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }

        var checkpoints = checkpointDir is null ? null : new CheckpointDirectory(checkpointDir);
        TrainingCheckpoint? start = null;
        if (resume)
        {
            start = checkpoints!.LoadNewestValid(w => output.WriteLine($"warning: {w}"));
            if (start is null) output.WriteLine($"no valid checkpoint in {checkpointDir}; starting from scratch");
            else CheckResumable(start, plan, data);
        }

        var trainer = new LocalTrainer(plan, data, start);
        output.WriteLine($"training {plan.Model.Name} ({trainer.Model.ParameterCount:N0} parameters) on {data.Name} " +
                         $"[{data.Train.Count:N0} train / {data.Test.Count:N0} test, sha256 {data.Sha256[..12]}]: " +
                         $"{trainer.TotalSteps:N0} steps of {plan.GlobalBatch}, {plan.Optimizer.Kind} lr {plan.LearningRate.ToString(CultureInfo.InvariantCulture)}, " +
                         $"seed {plan.Seed}, {Parallelism.MaxThreads} thread(s)" + (start is null ? "" : $", resumed at step {start.Step}"));

        using var metrics = metricsPath is null ? null : new MetricsWriter(metricsPath, append: start is not null);
        var clock = Stopwatch.StartNew();
        var progress = Stopwatch.StartNew();
        long stepsThisRun = 0;
        var lastTest = new BatchStats();
        trainer.StepCompleted = r =>
        {
            stepsThisRun++;
            metrics?.Step(r);
            if (progress.Elapsed.TotalSeconds >= 10)
            {
                progress.Restart();
                output.WriteLine($"  step {r.Step}/{r.TotalSteps}  loss {r.Loss:F4}  acc {r.Accuracy:F4}  lr {r.LearningRate:G4}  " +
                                 $"{stepsThisRun * plan.GlobalBatch / clock.Elapsed.TotalSeconds:F0} img/s");
            }
        };
        trainer.EpochCompleted = r =>
        {
            lastTest = r.Test;
            metrics?.Epoch(r);
            output.WriteLine($"epoch {r.Epoch + 1}/{plan.Epochs}  step {r.Step}  train_loss {r.Train.MeanLoss:F4}  train_acc {r.Train.Accuracy:F4}  " +
                             $"test_loss {r.Test.MeanLoss:F4}  test_acc {r.Test.Accuracy:F4}  {r.ImagesPerSecond:F0} img/s  {r.Seconds:F1}s");
        };
        if (checkpoints is not null)
            trainer.CheckpointDue = step => checkpoints.Save(path => TrainingCheckpoint.Save(path, trainer.Model, trainer.Optimizer, step,
                (int)((step - 1) / trainer.StepsPerEpoch), plan.Seed, plan.GlobalBatch, plan.MicroBatch, data.Name, data.Sha256), step);

        string status = "completed";
        int exit = ExitCodes.Done;
        try { trainer.Run(); }
        catch (TrainingDivergedException e)
        {
            output.WriteLine($"error: {e.Message}" + (checkpoints is null ? "" : $"; the last good checkpoint is kept in {checkpoints.Path}"));
            status = "diverged";
            exit = ExitCodes.Diverged;
        }
        double wall = clock.Elapsed.TotalSeconds;
        if (trainer.Step > 0 && lastTest.Samples == 0 && exit == ExitCodes.Done) lastTest = trainer.Evaluate();

        string hash = ParameterHash.Sha256Hex(trainer.Model.Parameters);
        output.WriteLine($"{status}: {trainer.Step} steps in {wall:F1}s, test_accuracy {lastTest.Accuracy:F4}, parameter_sha256 {hash}");
        if (reportPath is not null)
        {
            new TrainingReport
            {
                Status = status, Dataset = data.Name, DatasetSha256 = data.Sha256, Model = plan.Model.Name,
                Workers = 1, Epochs = plan.Epochs, Steps = trainer.Step, GlobalBatch = plan.GlobalBatch, Seed = plan.Seed,
                FinalTrainLoss = trainer.LastEpochTrain.MeanLoss, TestLoss = lastTest.MeanLoss, TestAccuracy = lastTest.Accuracy,
                WallSeconds = Math.Round(wall, 3),
                TrainImagesPerSecond = Math.Round(stepsThisRun * plan.GlobalBatch / wall, 1),
                ParameterSha256 = hash, ReplicasConsistent = true, WorkerFailures = 0, RedoneSteps = 0,
            }.WriteTo(reportPath);
            output.WriteLine($"report written to {reportPath}");
        }
        return exit;
    }

    static ModelSpec ResolveModel(string name)
    {
        try { return Presets.Resolve(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    static void CheckResumable(TrainingCheckpoint c, TrainingPlan plan, DatasetFolder data)
    {
        void Same<T>(string what, T saved, T asked)
        {
            if (!EqualityComparer<T>.Default.Equals(saved, asked))
                throw new UsageException($"--resume: {c.Path} was trained with {what} {saved}, this run asks for {asked}");
        }
        Same("model", c.Model.Spec.ToJson(), plan.Model.ToJson());
        Same("seed", c.Seed, plan.Seed);
        Same("global batch", c.GlobalBatch, plan.GlobalBatch);
        Same("micro-batch", c.MicroBatch, plan.MicroBatch);
        Same("dataset sha256", c.DatasetSha256, data.Sha256);
        Same("optimizer", System.Text.Json.JsonSerializer.Serialize(c.Optimizer!.Settings), plan.OptimizerJson);
    }
}
