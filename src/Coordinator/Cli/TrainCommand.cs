using System.CommandLine;
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
    static readonly Option<string?> DataOption = Opt.Text("--data DIR", "dataset folder: MNIST's four IDX files, CIFAR-10/100 binary files or an image folder [default: data/mnist, fetched if absent]");
    static readonly Option<string> ModelOption = Opt.Text("--model NAME|FILE", "lenet5, mnist-cnn, resnet20, or a model FILE.json", "lenet5")!;
    static readonly Option<int> EpochsOption = Opt.Int("--epochs E", "passes over the training set", 2, min: 1, max: 100_000);
    static readonly Option<int> BatchOption = Opt.Int("--batch B", "global batch size", 64, min: 1, max: 1 << 20);
    static readonly Option<int> MicroBatchOption = Opt.Int("--micro-batch M", "unit of work whose gradients are summed exactly", 16, min: 1, max: 1 << 20);
    static readonly Option<double?> LrOption = Opt.OptionalDouble("--lr X", "peak learning rate [default: 0.03; mnist-cnn 0.002; resnet20 0.05]", 0, double.MaxValue, minExclusive: true);
    static readonly Option<string?> OptimizerOption = Opt.Text("--optimizer KIND", $"{string.Join(" | ", OptimizerKinds.Names)} [default: momentum; mnist-cnn adam]");
    static readonly Option<double> MomentumOption = Opt.Double("--momentum M", "momentum factor", 0.9, 0, 1);
    static readonly Option<bool> NesterovOption = Opt.Flag("--nesterov", "Nesterov momentum");
    static readonly Option<double?> WeightDecayOption = Opt.OptionalDouble("--weight-decay W", "weight decay [default: 0; resnet20 1e-4]", 0, 1);
    static readonly Option<string> ScheduleOption = Opt.Text("--schedule S", "cosine | cosine:MIN | constant | step:EVERY:GAMMA", "cosine")!;
    static readonly Option<long?> WarmupOption = Opt.OptionalLong("--warmup STEPS", "linear learning-rate warm-up [default: 5% of the run's steps]", min: 0);
    static readonly Option<string> LossOption = Opt.Choice("--loss L", "cross-entropy | mse", "cross-entropy", ["cross-entropy", "mse"]);
    static readonly Option<ulong> SeedOption = Opt.ULong("--seed S", "seed of initialisation, shuffling, dropout and augmentation", 1);
    static readonly Option<string?> AugmentOption = Opt.Text("--augment SPEC", "training-time crop and flip, drawn from (seed, epoch, sample): none | flip | crop:P | crop:P,flip [default: none; resnet20 on colour images crop:H/8,flip]");
    static readonly Option<long?> MaxStepsOption = Opt.OptionalLong("--max-steps K", "stop after K steps", min: 1);
    static readonly Option<int> WorkersOption = Opt.Int("--workers N", "worker processes to start on this machine", 1, min: 0, max: 256);
    static readonly Option<bool> InProcessOption = Opt.Flag("--in-process", "run the N workers as actors inside this process instead");
    static readonly Option<int> RemoteWorkersOption = Opt.Int("--remote-workers K", "also wait for K workers started elsewhere (disttrain worker --coordinator HOST:PORT)", 0, min: 0, max: 256);
    static readonly Option<string> AllReduceOption = Opt.Choice("--allreduce ALG", "ring (peer to peer) or star (through the coordinator)", "ring", [.. DistTrain.Protocol.AllReduceAlgorithms.Names]);
    static readonly Option<string> HostOption = Opt.Text("--host H", "address to bind and advertise; workers elsewhere must reach it", "127.0.0.1")!;
    static readonly Option<int> PortOption = Opt.Int("--port P", "coordinator port (0: any free port)", 0, min: 0, max: 65535);
    static readonly Option<int?> ThreadsOption = Opt.OptionalInt("--threads T", "compute threads per worker [default: cores / workers]", min: 1, max: 1024);
    static readonly Option<double> WorkerWaitOption = Opt.Double("--worker-wait SECS", "wait this long for workers at the start, and for a replacement when none is left", DistTrain.Protocol.ProtocolConfig.WorkerWait.TotalSeconds, 0, 86_400, minExclusive: true);
    static readonly Option<string?> TokenFileOption = Opt.Text("--token-file FILE", $"the job token workers must present [default: {WorkerHost.TokenVariable}, else a random one]");
    static readonly Option<string?> TlsCertOption = Opt.Text("--tls-cert NODE.pfx", "Akka.Remote over TLS with mutual authentication: this node's certificate (deploy/make-certs.sh; password from DISTTRAIN_TLS_PASSWORD)");
    static readonly Option<string?> TlsCaOption = Opt.Text("--tls-ca CA.crt", "with --tls-cert: peers must hold a certificate from this CA");
    static readonly Option<string?> CheckpointDirOption = Opt.Text("--checkpoint-dir DIR", "save a checkpoint after every epoch (newest 3 kept); --resume continues from it");
    static readonly Option<long?> CheckpointEveryOption = Opt.OptionalLong("--checkpoint-every K", "also save one every K steps", min: 1);
    static readonly Option<string?> InitFromOption = Opt.Text("--init-from FILE.safetensors", "start from these parameters instead of the seed's (tensors named as disttrain summary's layers: conv1.weight, ...; F32, F16 or BF16), to fine-tune a model trained elsewhere");
    static readonly Option<bool> ResumeOption = Opt.Flag("--resume", "continue from the newest valid checkpoint in --checkpoint-dir");
    static readonly Option<string?> MetricsOption = Opt.Text("--metrics FILE.jsonl", "per-step and per-epoch metrics as JSON lines; loss and accuracy plots (PNG) are drawn from them at the end");
    static readonly Option<string?> TensorBoardOption = Opt.Text("--tensorboard DIR", "TensorBoard event file in DIR: loss, accuracy, learning rate and images/s per step, train and test figures per epoch");
    static readonly Option<string?> ReportOption = Opt.Text("--report FILE.json", "summary report at the end (the plots go next to it)");
    static readonly Option<int?> StatusPortOption = Opt.OptionalInt("--status-port P", "serve GET /status (JSON) and /metrics (Prometheus) over HTTP on --host:P while training (read-only, no authentication)", min: 1, max: 65535);
    static readonly Option<string> LogFormatOption = Opt.LogFormat();
    static readonly Option<string?> MemoryBudgetOption = Opt.Text("--memory-budget SIZE", "refuse a model whose estimated memory (coordinator and this machine's workers) is over SIZE, e.g. 16G [default: 90% of the memory .NET may use here]");
    static readonly Option<double> StopGraceOption = Opt.Double("--stop-grace SECS", "after SIGTERM/SIGINT, how long the step in flight may take before the run stops without it (checkpointing the last state the coordinator holds; exit 4)", DistTrain.Protocol.ProtocolConfig.StopGrace.TotalSeconds, 0, 86_400, minExclusive: true);
    static readonly Option<string> ProgressOption = Opt.Choice("--progress MODE", "auto (live bars on a terminal, plain lines otherwise) | live | plain", "auto", ["auto", "live", "plain"]);

    public static Command Create(TextWriter output)
    {
        var command = new Command("train", "train a model: a coordinator and its workers (local processes, in-process actors, or workers started elsewhere)")
        {
            DataOption, ModelOption, EpochsOption, BatchOption, MicroBatchOption, LrOption, OptimizerOption, MomentumOption, NesterovOption,
            WeightDecayOption, ScheduleOption, WarmupOption, LossOption, SeedOption, AugmentOption, MaxStepsOption, WorkersOption, InProcessOption,
            RemoteWorkersOption, AllReduceOption, HostOption, PortOption, ThreadsOption, WorkerWaitOption, TokenFileOption, TlsCertOption,
            TlsCaOption, CheckpointDirOption, CheckpointEveryOption, ResumeOption, InitFromOption, MetricsOption, TensorBoardOption, ReportOption, StatusPortOption, ProgressOption, LogFormatOption, StopGraceOption, MemoryBudgetOption,
        };
        command.SetAction(p => Run(p, output));
        return command;
    }

    static int Run(ParseResult a, TextWriter output)
    {
        var (logOutput, logging) = Opt.Logs(a.GetValue(LogFormatOption)!, output, "disttrain.train");
        using (logging) return Run(a, logOutput, logging);
    }

    static int Run(ParseResult a, TextWriter output, Microsoft.Extensions.Logging.ILoggerFactory? logging)
    {
        int workers = a.GetValue(WorkersOption);
        int remoteWorkers = a.GetValue(RemoteWorkersOption);
        if (workers + remoteWorkers == 0) throw new UsageException("--workers 0 needs --remote-workers K to have someone to train");
        bool inProcess = a.GetValue(InProcessOption);
        if (inProcess && remoteWorkers > 0) throw new UsageException("--in-process cannot take --remote-workers; drop one of them");
        var allReduce = DistTrain.Protocol.AllReduceAlgorithms.Parse(a.GetValue(AllReduceOption)!);
        string host = Opt.LocalHost(a.GetValue(HostOption)!);
        int port = a.GetValue(PortOption);
        int threads = a.GetValue(ThreadsOption) ?? Math.Max(1, Environment.ProcessorCount / Math.Max(1, workers));
        Parallelism.MaxThreads = threads;
        int? statusPort = a.GetValue(StatusPortOption);

        string modelOption = a.GetValue(ModelOption)!;
        var model = ResolveModel(modelOption);
        var augment = a.GetValue(AugmentOption) is string spec ? ParseAugmentation(spec) : null;
        var recipe = Presets.Recipe(model.Name);
        var plan = new TrainingPlan
        {
            Model = model,
            Optimizer = new OptimizerSettings(
                Kind: ParseOptimizer(a.GetValue(OptimizerOption) ?? recipe.Optimizer),
                Momentum: a.GetValue(MomentumOption),
                Nesterov: a.GetValue(NesterovOption),
                WeightDecay: a.GetValue(WeightDecayOption) ?? recipe.WeightDecay),
            LearningRate = a.GetValue(LrOption) ?? recipe.LearningRate,
            Schedule = a.GetValue(ScheduleOption)!,
            Loss = a.GetValue(LossOption)!,
            Epochs = a.GetValue(EpochsOption),
            GlobalBatch = a.GetValue(BatchOption),
            MicroBatch = a.GetValue(MicroBatchOption),
            Seed = a.GetValue(SeedOption),
            MaxSteps = a.GetValue(MaxStepsOption),
        };
        string? checkpointDir = a.GetValue(CheckpointDirOption);
        long checkpointEvery = a.GetValue(CheckpointEveryOption) ?? 0;
        if (checkpointEvery > 0 && checkpointDir is null) throw new UsageException("--checkpoint-every needs --checkpoint-dir DIR");
        bool resume = a.GetValue(ResumeOption);
        if (resume && checkpointDir is null) throw new UsageException("--resume needs --checkpoint-dir DIR");
        string? metricsPath = a.GetValue(MetricsOption), reportPath = a.GetValue(ReportOption);
        if (reportPath is not null) OutputPaths.File("--report", reportPath, replaced: true);
        if (metricsPath is not null) OutputPaths.File("--metrics", metricsPath, replaced: false);
        if (checkpointDir is not null) OutputPaths.Folder("--checkpoint-dir", checkpointDir);
        if (a.GetValue(TensorBoardOption) is { } tensorBoardFolder) OutputPaths.Folder("--tensorboard", tensorBoardFolder);

        long? warmup = a.GetValue(WarmupOption);
        double workerWait = a.GetValue(WorkerWaitOption);
        var tls = TlsFiles.From(a.GetValue(TlsCertOption), a.GetValue(TlsCaOption));
        if (tls is not null && inProcess) throw new UsageException("--in-process has no network to protect; drop --tls-cert/--tls-ca or --in-process");
        tls?.Load();   // a bad file is reported now, before any data is loaded
        var data = DataLocator.Load(a.GetValue(DataOption), output, out string? dataDir);
        // Default warm-up: the first 5% of the run, which keeps the early high-rate steps stable.
        plan = plan with { WarmupSteps = warmup ?? plan.TotalSteps(data.Train.Count) / 20 };
        // A preset takes the data's shape, classes and (without --augment) its recipe's augmentation for them.
        plan = plan with
        {
            Model = ModelFor(modelOption, plan.Model, data),
            Augment = augment ?? (Presets.IsPreset(modelOption) ? Presets.DefaultAugmentation(modelOption, data.Train.Channels, data.Train.Height) : Augmentation.None),
        };
        if (plan.Augment.Unfit(data.Train.Height, data.Train.Width) is { } unfit) throw new UsageException(unfit);
        if (plan.GlobalBatch > data.Train.Count)
            throw new UsageException($"--batch {plan.GlobalBatch}: larger than the {data.Train.Count:N0} training samples of {data.Name}; a step needs a whole batch");
        CheckMemory(plan, workers, threads, a.GetValue(MemoryBudgetOption));
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

        var built = Model.Create(plan.Model);   // for --init-from's names and the lines below; the coordinator makes its own
        float[]? initial = null;
        if (a.GetValue(InitFromOption) is { } initFrom)
        {
            if (start is not null) output.WriteLine($"note: resuming from {start.Path}; --init-from {initFrom} is not used");
            else initial = ModelWeights.Load(initFrom, built);
        }

        string token = JobToken.Read(a.GetValue(TokenFileOption)) ?? Convert.ToHexString(RandomNumberGenerator.GetBytes(24));
        var settings = new CoordinatorActor.Settings(plan, data, allReduce, token, workers + remoteWorkers, start, checkpoints is not null, checkpointEvery,
            TimeSpan.FromSeconds(workerWait)) { InitialParameters = initial, StopGrace = TimeSpan.FromSeconds(a.GetValue(StopGraceOption)) };
        long totalSteps = plan.TotalSteps(data.Train.Count);
        output.WriteLine($"training {plan.Model.Name} ({built.ParameterCount:N0} parameters) on {data.Name} " +
                         $"[{data.Train.Count:N0} train / {data.Test.Count:N0} test, sha256 {data.Sha256[..12]}]: " +
                         $"{totalSteps:N0} steps of {plan.GlobalBatch} (micro-batches of {plan.MicroBatch}), {plan.Optimizer.Kind.Name()} lr {plan.LearningRate.ToString(CultureInfo.InvariantCulture)}, " +
                         $"seed {plan.Seed}, {workers}{(inProcess ? " in-process" : "")} worker(s){(remoteWorkers > 0 ? $" + {remoteWorkers} remote" : "")}" +
                         (start is null ? "" : $", resumed at step {start.Step}") + (initial is null ? "" : $", parameters from {a.GetValue(InitFromOption)}"));
        output.WriteLine(ModelSummary.OneLine(built) + " (disttrain summary shows every layer)");

        using var metrics = metricsPath is null ? null : new MetricsWriter(metricsPath, append: start is not null);
        using var tensorBoard = a.GetValue(TensorBoardOption) is { } tensorBoardDir ? OpenTensorBoard(tensorBoardDir) : null;
        var status = new TrainingStatus(plan.Model.Name, plan.Epochs, totalSteps, EpochOrder.StepsPerEpoch(data.Train.Count, plan.GlobalBatch));
        using var statusServer = statusPort is int sp ? StatusServer.Start(status, host, sp) : null;
        if (statusServer is not null) output.WriteLine($"status at {statusServer.Url}status and {statusServer.Url}metrics");
        var clock = Stopwatch.StartNew();
        ClusterOutcome outcome;
        ConsoleObserver observer;
        using (var view = logging is not null ? new LogProgress(logging.CreateLogger("disttrain.progress")) : IProgressView.Create(a.GetValue(ProgressOption)!, output, status))
        {
            observer = new ConsoleObserver(view, status, metrics, checkpoints, plan, data, tensorBoard);
            var akkaLog = DistTrain.Protocol.ConciseLogger.Sink;
            DistTrain.Protocol.ConciseLogger.Sink = view.Log;   // Akka's warnings go above the live bars, not through them
            try
            {
                outcome = inProcess
                    ? ClusterRunner.RunInProcessAsync(settings, workers, observer).GetAwaiter().GetResult()
                    : ClusterRunner.RunClusterAsync(settings, host, port, workers, dataDir, threads, observer, tls).GetAwaiter().GetResult();
            }
            finally { DistTrain.Protocol.ConciseLogger.Sink = akkaLog; }
        }
        status.Finish(outcome.Status.Text());
        double wall = clock.Elapsed.TotalSeconds;

        int exit = outcome.Status switch
        {
            RunStatus.Completed => ExitCodes.Done, RunStatus.Diverged => ExitCodes.Diverged,
            _ when outcome.BadInput => ExitCodes.BadInput, _ => ExitCodes.ClusterFailed,
        };
        if (outcome.Error is not null)
            output.WriteLine($"error: {outcome.Error}" + (checkpoints is null ? "" : $"; checkpoints written so far are kept in {checkpoints.Path}"));
        output.WriteLine($"{outcome.Status.Text()}: {outcome.Steps} steps in {wall:F1}s, test_accuracy {outcome.LastTest.Accuracy:F4}, parameter_sha256 {outcome.ParameterSha256}" +
                         (outcome.TrainSeconds > 0 ? $", {outcome.TrainedImages / outcome.TrainSeconds:F0} img/s" : "") + observer.TimingSummary());
        if (reportPath is not null)
        {
            var report = new TrainingReport
            {
                Status = outcome.Status, Dataset = data.Name, DatasetSha256 = data.Sha256, Model = plan.Model.Name,
                Workers = outcome.Workers, Epochs = plan.Epochs, Steps = outcome.Steps, GlobalBatch = plan.GlobalBatch, Seed = plan.Seed,
                FinalTrainLoss = outcome.LastEpochTrain.MeanLoss, TestLoss = outcome.LastTest.MeanLoss, TestAccuracy = outcome.LastTest.Accuracy,
                WallSeconds = Math.Round(wall, 3),
                TrainImagesPerSecond = outcome.TrainSeconds > 0 ? Math.Round(outcome.TrainedImages / outcome.TrainSeconds, 1) : 0,
                ParameterSha256 = outcome.ParameterSha256, ReplicasConsistent = outcome.ReplicasConsistent,
                WorkerFailures = outcome.WorkerFailures, RedoneSteps = outcome.RedoneSteps,
            };
            try
            {
                report.WriteTo(reportPath);
                output.WriteLine($"report written to {reportPath}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                output.WriteLine($"error: --report {reportPath}: cannot write: {e.Message.ReplaceLineEndings(" ")}");
                exit = ExitCodes.ClusterFailed;
            }
        }
        if (metricsPath is not null)
        {
            try
            {
                metrics!.Dispose();   // flushed before it is read back
                var plots = RunPlots.Write(metricsPath, RunPlots.PrefixFor(metricsPath, reportPath));
                output.WriteLine($"metrics in {metricsPath}; plots {plots.LossPng} and {plots.AccuracyPng}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                output.WriteLine($"warning: --metrics {metricsPath}: cannot write ({e.Message.ReplaceLineEndings(" ")}); no plots");
            }
            // The report and metrics are written; a plot that cannot be drawn (no metrics, a missing
            // native library or font in a slim container image) must not fail a completed run.
            catch (Exception e) { output.WriteLine($"no plots: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}"); }
        }
        return exit;
    }

    static TensorBoardWriter OpenTensorBoard(string dir)
    {
        try { return new TensorBoardWriter(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--tensorboard {dir}: cannot write an event file there: {e.Message}");
        }
    }

    static OptimizerKind ParseOptimizer(string kind) =>
        OptimizerKinds.TryParse(kind, out var k) ? k : throw new UsageException($"--optimizer: expected {string.Join("|", OptimizerKinds.Names)}, got '{kind}'");

    static Augmentation ParseAugmentation(string spec)
    {
        try { return Augmentation.Parse(spec); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    static ModelSpec ResolveModel(string name)
    {
        try { return Presets.Resolve(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    /// A preset takes the dataset's sample shape and class count; a model file must fit them as it
    /// is (its input as many values as a sample: a 784 x 1 x 1 input takes MNIST's images flattened).
    static ModelSpec ModelFor(string option, ModelSpec model, DatasetFolder data)
    {
        if (Presets.IsPreset(option)) return Presets.Fit(model, [data.Train.Channels, data.Train.Height, data.Train.Width], data.Train.Classes);
        if (model.Input.Aggregate(1L, (x, y) => x * y) != data.Train.SampleSize)
            throw new UsageException($"--model {option}: expects {string.Join("x", model.Input)} inputs, {data.Name} has {data.Train.ShapeText}");
        Model.Footprint footprint;
        try { footprint = Model.Measure(model); }
        catch (ArgumentException e) { throw new UsageException($"--model {option}: {e.Message}"); }
        if (footprint.Outputs < data.Train.Classes)
            throw new UsageException($"--model {option}: model {model.Name} has {footprint.Outputs} outputs, {data.Name} has {data.Train.Classes} classes; expected one output per class");
        return model;
    }

    /// The memory the coordinator and this machine's workers will need, estimated from the spec
    /// before anything is allocated, against --memory-budget (default: 90% of the memory .NET may
    /// use here). Over it: one line with the estimate, exit 2.
    static void CheckMemory(TrainingPlan plan, int localWorkers, int threads, string? budgetText)
    {
        Model.Footprint footprint;
        try { footprint = Model.Measure(plan.Model); }
        catch (ArgumentException e) { throw new UsageException($"--model {plan.Model.Name}: {e.Message}"); }
        var estimate = MemoryEstimate.Of(footprint, plan.Optimizer.Kind, plan.MicroBatch, threads);
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long budget = budgetText is null ? MemoryEstimate.DefaultBudget
            : MemoryEstimate.ParseSize(budgetText) ?? throw new UsageException($"--memory-budget: expected a size such as 800M or 16G, got '{budgetText}'");
        long need = estimate.OnThisMachine(localWorkers);
        if (need <= budget && footprint.Parameters <= Array.MaxLength) return;
        string where = budgetText is null ? $"{MemoryEstimate.Text(budget)} (90% of the {MemoryEstimate.Text(available)} .NET may use here)" : MemoryEstimate.Text(budget);
        throw new UsageException(
            $"model {plan.Model.Name} ({footprint.Parameters:N0} parameters) needs about {MemoryEstimate.Text(need)} on this machine " +
            $"({localWorkers} worker(s) x {MemoryEstimate.Text(estimate.WorkerBytes)}: parameters {MemoryEstimate.Text(estimate.ParameterBytes)}, optimizer {MemoryEstimate.Text(estimate.OptimizerBytes)}, " +
            $"gradients and exact sums {MemoryEstimate.Text(estimate.GradientBytes)}, activations {MemoryEstimate.Text(estimate.ActivationBytes)}; coordinator {MemoryEstimate.Text(estimate.CoordinatorBytes)}), " +
            (footprint.Parameters > Array.MaxLength ? $"and one vector holds at most {Array.MaxLength:N0} values; " : $"more than --memory-budget {where}; ") +
            "use a smaller model, fewer workers or threads, or a larger --memory-budget");
    }

    /// Every label of the dataset must name one of the model's outputs.
    internal static void CheckClasses(string what, Model model, DatasetFolder data)
    {
        if (model.OutputShape.Size < data.Train.Classes)
            throw new UsageException($"{what}: model {model.Name} has {model.OutputShape.Size} outputs, {data.Name} has {data.Train.Classes} classes; " +
                                     "expected one output per class");
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
        Same("augmentation", c.Augment, plan.Augment.ToString());
        Same("dataset sha256", c.DatasetSha256, data.Sha256);
        Same("optimizer", System.Text.Json.JsonSerializer.Serialize(c.Optimizer!.Settings), plan.OptimizerJson);
    }
}
