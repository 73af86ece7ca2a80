using System.Diagnostics;
using System.Globalization;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Kernels;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using System.Security.Cryptography;
using DistTrain.Coordinator.Cluster;
using DistTrain.Coordinator.Reporting;
using DistTrain.Worker;

namespace DistTrain.Coordinator.Cli;

/// disttrain train: trains a model and writes the report, metrics and checkpoints asked for.
public static class TrainCommand
{
    static readonly HashSet<string> ValueOptions =
    [
        "--data", "--model", "--epochs", "--batch", "--micro-batch", "--lr", "--optimizer", "--momentum", "--weight-decay",
        "--schedule", "--warmup", "--loss", "--workers", "--seed", "--max-steps", "--checkpoint-dir",
        "--metrics", "--report", "--threads", "--checkpoint-every", "--remote-workers", "--allreduce", "--host", "--port",
        "--worker-wait", "--token-file", "--tls-cert", "--tls-ca",
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
          --lr X                peak learning rate (default: 0.03; mnist-cnn 0.002)
          --optimizer KIND      sgd | momentum | adam | adamw (default: momentum; mnist-cnn adam)
          --momentum M          momentum factor (default 0.9); --nesterov for Nesterov momentum
          --weight-decay W      weight decay (default 0)
          --schedule S          cosine (default) | cosine:MIN | constant | step:EVERY:GAMMA
          --warmup STEPS        linear learning-rate warm-up (default: 5% of the run's steps)
          --loss L              cross-entropy (default) | mse
          --seed S              seed of initialisation, shuffling and dropout (default 1)
          --max-steps K         stop after K steps
          --workers N           worker processes to start on this machine (default 1)
          --in-process          run the N workers as actors inside this process instead
          --remote-workers K    also wait for K workers started elsewhere (disttrain worker --coordinator HOST:PORT)
          --allreduce ALG       ring (default, peer to peer) | star (through the coordinator)
          --host H              address to bind and advertise (default 127.0.0.1)
          --port P              coordinator port (default 0: any free port)
          --threads T           compute threads per worker (default: cores / workers)
          --worker-wait SECS    wait this long for workers at the start and for a replacement when none is left (default 60)
          --token-file FILE     the job token workers must present (default: DISTTRAIN_JOB_TOKEN, else a random one)
          --tls-cert NODE.pfx   Akka.Remote over TLS with mutual authentication: this node's certificate (deploy/make-certs.sh);
          --tls-ca ca.crt         peers must hold a certificate from this CA. The .pfx password comes from DISTTRAIN_TLS_PASSWORD
          --checkpoint-dir DIR  save a checkpoint after every epoch (newest 3 kept); --resume continues from it
          --checkpoint-every K  also save one every K steps
          --metrics FILE.jsonl  per-step and per-epoch metrics as JSON lines
          --report FILE.json    summary report at the end
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        var a = new Arguments(args, ValueOptions, Flags);
        int workers = a.Int("--workers", 1, min: 0, max: 256);
        int remoteWorkers = a.Int("--remote-workers", 0, min: 0, max: 256);
        if (workers + remoteWorkers == 0) throw new UsageException("--workers 0 needs --remote-workers K to have someone to train");
        bool inProcess = a.Flag("--in-process");
        if (inProcess && remoteWorkers > 0) throw new UsageException("--in-process cannot take --remote-workers; drop one of them");
        string allReduce = a.Choice("--allreduce", "ring", ["ring", "star"]);
        string host = a.String("--host", "127.0.0.1");
        int port = a.Int("--port", 0, min: 0, max: 65535);
        int threads = a.Int("--threads", Math.Max(1, Environment.ProcessorCount / Math.Max(1, workers)), min: 1, max: 1024);
        Parallelism.MaxThreads = threads;

        var model = ResolveModel(a.String("--model", "lenet5"));
        var recipe = Presets.Recipe(model.Name);
        var plan = new TrainingPlan
        {
            Model = model,
            Optimizer = new OptimizerSettings(
                Kind: a.Choice("--optimizer", recipe.Optimizer, OptimizerSettings.Kinds),
                Momentum: a.Double("--momentum", 0.9, 0, 1, minExclusive: false),
                Nesterov: a.Flag("--nesterov"),
                WeightDecay: a.Double("--weight-decay", 0, 0, 1)),
            LearningRate = a.Double("--lr", recipe.LearningRate, 0, double.MaxValue, minExclusive: true),
            Schedule = a.String("--schedule", "cosine"),
            Loss = a.Choice("--loss", "cross-entropy", ["cross-entropy", "mse"]),
            Epochs = a.Int("--epochs", 2, min: 1, max: 100_000),
            GlobalBatch = a.Int("--batch", 64, min: 1, max: 1 << 20),
            MicroBatch = a.Int("--micro-batch", 16, min: 1, max: 1 << 20),
            Seed = a.ULong("--seed", 1),
            MaxSteps = a.Long("--max-steps", min: 1),
        };
        string? checkpointDir = a.String("--checkpoint-dir");
        long checkpointEvery = a.Long("--checkpoint-every", min: 1) ?? 0;
        if (checkpointEvery > 0 && checkpointDir is null) throw new UsageException("--checkpoint-every needs --checkpoint-dir DIR");
        bool resume = a.Flag("--resume");
        if (resume && checkpointDir is null) throw new UsageException("--resume needs --checkpoint-dir DIR");
        string? metricsPath = a.String("--metrics"), reportPath = a.String("--report");

        long? warmup = a.Long("--warmup", min: 0);
        double workerWait = a.Double("--worker-wait", 60, 0, 86_400, minExclusive: true);
        var tls = TlsFiles.From(a.String("--tls-cert"), a.String("--tls-ca"));
        if (tls is not null && inProcess) throw new UsageException("--in-process has no network to protect; drop --tls-cert/--tls-ca or --in-process");
        tls?.Load();   // a bad file is reported now, before any data is loaded
        var data = DataLocator.Load(a.String("--data"), output, out string? dataDir);
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

        string token = JobToken.Read(a.String("--token-file")) ?? Convert.ToHexString(RandomNumberGenerator.GetBytes(24));
        var settings = new CoordinatorActor.Settings(plan, data, allReduce, token, workers + remoteWorkers, start, checkpoints is not null, checkpointEvery,
            TimeSpan.FromSeconds(workerWait));
        long totalSteps = plan.TotalSteps(data.Train.Count);
        output.WriteLine($"training {plan.Model.Name} ({Model.Create(plan.Model).ParameterCount:N0} parameters) on {data.Name} " +
                         $"[{data.Train.Count:N0} train / {data.Test.Count:N0} test, sha256 {data.Sha256[..12]}]: " +
                         $"{totalSteps:N0} steps of {plan.GlobalBatch} (micro-batches of {plan.MicroBatch}), {plan.Optimizer.Kind} lr {plan.LearningRate.ToString(CultureInfo.InvariantCulture)}, " +
                         $"seed {plan.Seed}, {workers}{(inProcess ? " in-process" : "")} worker(s){(remoteWorkers > 0 ? $" + {remoteWorkers} remote" : "")}" +
                         (start is null ? "" : $", resumed at step {start.Step}"));

        using var metrics = metricsPath is null ? null : new MetricsWriter(metricsPath, append: start is not null);
        var observer = new ConsoleObserver(output, metrics, checkpoints, plan, data);
        var clock = Stopwatch.StartNew();
        ClusterOutcome outcome = inProcess
            ? ClusterRunner.RunInProcessAsync(settings, workers, observer).GetAwaiter().GetResult()
            : ClusterRunner.RunClusterAsync(settings, host, port, workers, dataDir, threads, observer, tls).GetAwaiter().GetResult();
        double wall = clock.Elapsed.TotalSeconds;

        int exit = outcome.Status switch { "completed" => ExitCodes.Done, "diverged" => ExitCodes.Diverged, _ => ExitCodes.ClusterFailed };
        if (outcome.Error is not null)
            output.WriteLine($"error: {outcome.Error}" + (checkpoints is null ? "" : $"; checkpoints written so far are kept in {checkpoints.Path}"));
        output.WriteLine($"{outcome.Status}: {outcome.Steps} steps in {wall:F1}s, test_accuracy {outcome.LastTest.Accuracy:F4}, parameter_sha256 {outcome.ParameterSha256}" +
                         (outcome.TrainSeconds > 0 ? $", {outcome.TrainedImages / outcome.TrainSeconds:F0} img/s" : "") + observer.TimingSummary());
        if (reportPath is not null)
        {
            new TrainingReport
            {
                Status = outcome.Status, Dataset = data.Name, DatasetSha256 = data.Sha256, Model = plan.Model.Name,
                Workers = outcome.Workers, Epochs = plan.Epochs, Steps = outcome.Steps, GlobalBatch = plan.GlobalBatch, Seed = plan.Seed,
                FinalTrainLoss = outcome.LastEpochTrain.MeanLoss, TestLoss = outcome.LastTest.MeanLoss, TestAccuracy = outcome.LastTest.Accuracy,
                WallSeconds = Math.Round(wall, 3),
                TrainImagesPerSecond = outcome.TrainSeconds > 0 ? Math.Round(outcome.TrainedImages / outcome.TrainSeconds, 1) : 0,
                ParameterSha256 = outcome.ParameterSha256, ReplicasConsistent = outcome.ReplicasConsistent,
                WorkerFailures = outcome.WorkerFailures, RedoneSteps = outcome.RedoneSteps,
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
