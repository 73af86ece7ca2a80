using Akka.TestKit.Xunit2;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;

namespace DistTrain.Cluster.Tests;

/// serialize-messages = on: every message between these local actors is serialized and read
/// back by the protocol serializer, as it would be between processes.
public class InProcessClusterTests() : TestKit(ProtocolConfig.Local(serializeMessages: true))
{
    static readonly DatasetFolder Data = DatasetFolder.Synthetic(trainCount: 768, testCount: 200, seed: 11);

    static TrainingPlan Plan(long? maxSteps, ModelSpec? model = null) => new()
    {
        Model = model ?? Presets.LeNet5, Optimizer = new OptimizerSettings(OptimizerKind.Momentum), LearningRate = 0.02,
        GlobalBatch = 64, MicroBatch = 16, Epochs = 2, Seed = 7, MaxSteps = maxSteps,
    };

    static readonly TimeSpan Patience = TestSupport.Patience.Training;

    [Fact]
    public async Task Three_workers_converge_and_replicas_stay_bitwise_equal()
    {
        // 2 epochs of 12 steps on 768 separable samples: a working cluster ends well above 90%
        // on the held-out split (chance: 10%) with the training loss far below ln(10) = 2.3.
        var cluster = InProcessCluster.Start(Sys, Plan(maxSteps: null), Data, workers: 3, name: "converge");
        var outcome = await cluster.Completion.WaitAsync(Patience);
        Assert.Equal(RunStatus.Completed, outcome.Status);
        Assert.True(outcome.ReplicasConsistent);
        Assert.Equal(24, outcome.Steps);
        Assert.True(outcome.LastTest.Accuracy >= 0.9, $"test accuracy {outcome.LastTest.Accuracy:F3}");
        Assert.True(outcome.LastEpochTrain.MeanLoss < 0.5, $"train loss {outcome.LastEpochTrain.MeanLoss:F3}");
    }

    [Fact]
    public async Task One_two_and_three_workers_and_both_algorithms_give_the_local_reference_hash()
    {
        var plan = Plan(maxSteps: 6, model: Presets.MnistCnn);   // dropout included: masks depend on samples, not workers
        var reference = new LocalTrainer(plan, Data);
        reference.Run();
        string expected = ParameterHash.Sha256Hex(reference.Model.Parameters);
        foreach (var (workers, algorithm) in new[] { (1, AllReduceAlgorithm.Ring), (2, AllReduceAlgorithm.Ring), (3, AllReduceAlgorithm.Ring), (3, AllReduceAlgorithm.Star) })
        {
            var outcome = await InProcessCluster.Start(Sys, plan, Data, workers, algorithm, name: $"inv-{workers}-{algorithm.Name()}").Completion.WaitAsync(Patience);
            Assert.Equal(RunStatus.Completed, outcome.Status);
            Assert.True(expected == outcome.ParameterSha256, $"{workers} workers ({algorithm}): {outcome.ParameterSha256} != {expected}");
        }
    }

    [Fact]
    public async Task Wrong_token_protocol_version_or_dataset_is_refused_and_the_job_is_unaffected()
    {
        var plan = Plan(maxSteps: 4);
        var undisturbed = await InProcessCluster.Start(Sys, plan, Data, 1, name: "calm").Completion.WaitAsync(Patience);

        var done = new TaskCompletionSource<ClusterOutcome>();
        var settings = new CoordinatorActor.Settings(plan, Data, AllReduceAlgorithm.Ring, "secret", ExpectedWorkers: 1, Resume: null, CheckpointEveryEpoch: false);
        var coordinator = Sys.ActorOf(CoordinatorActor.Props(settings, new InProcessCluster.SilentObserver(), done), "guarded");
        var intruder = CreateTestProbe();
        coordinator.Tell(new RegisterWorker(ProtocolVersion.Current, "guess", "", 1, "intruder"), intruder.Ref);
        Assert.Equal("wrong job token", intruder.ExpectMsg<WorkerRefused>(TimeSpan.FromSeconds(20)).Reason);
        coordinator.Tell(new RegisterWorker(ProtocolVersion.Current + 1, "secret", "", 1, "future"), intruder.Ref);
        Assert.Contains("protocol version", intruder.ExpectMsg<WorkerRefused>(TimeSpan.FromSeconds(20)).Reason);
        coordinator.Tell(new RegisterWorker(ProtocolVersion.Current, "secret", new string('a', 64), 1, "fashion"), intruder.Ref);
        Assert.Contains("its --data is another dataset (sha256 aaaaaaaaaaaa)", intruder.ExpectMsg<WorkerRefused>(TimeSpan.FromSeconds(20)).Reason);

        Sys.ActorOf(DistTrain.Worker.WorkerActor.Props(new(coordinator.Path.ToStringWithoutAddress(), "secret", Data, 1, "honest")), "honest");
        var outcome = await done.Task.WaitAsync(Patience);
        Assert.Equal(RunStatus.Completed, outcome.Status);
        Assert.Equal(undisturbed.ParameterSha256, outcome.ParameterSha256);
        intruder.ExpectNoMsg(TimeSpan.FromMilliseconds(200));   // the intruder was never sent work
    }

    /// Keeps what each step's all-reduce sent, as the metrics file gets it.
    sealed class ByteCounter : ITrainingObserver
    {
        public readonly List<long> Bytes = [];
        public void Log(string line) { }
        public void StepCompleted(StepReport report, StepTiming timing) => Bytes.Add(timing.AllReduceBytes);
        public void EpochCompleted(EpochReport report) { }
        public void CheckpointDue(Model model, Optimizer optimizer, long step) { }
    }

    [Fact]
    public async Task Every_steps_all_reduce_bytes_reach_the_observer_below_8_bytes_a_value()
    {
        var counter = new ByteCounter();
        var outcome = await InProcessCluster.Start(Sys, Plan(maxSteps: 3), Data, 2, observer: counter, name: "bytes").Completion.WaitAsync(Patience);
        Assert.Equal(RunStatus.Completed, outcome.Status);
        // A ring of N ranks sends 2(N-1)/N of the vector from each rank: with raw int64s, 2(N-1) x 8 bytes a parameter in all.
        long raw = 2 * (2 - 1) * 8L * Model.Create(Presets.LeNet5).ParameterCount;
        Assert.Equal(3, counter.Bytes.Count);
        Assert.All(counter.Bytes, b => Assert.InRange(b, 1, raw - 1));
    }

    /// Forges step reports right after step `at` commits, on the coordinator's thread: they reach its
    /// mailbox before any worker has the next step, so they arrive while that step is in flight.
    sealed class Forger(long at, Action<long> forge) : ITrainingObserver
    {
        public int Forged;
        public void Log(string line) { }
        public void StepCompleted(StepReport report, StepTiming timing)
        {
            if (report.Step == at) { forge(report.Step); Forged++; }
        }
        public void EpochCompleted(EpochReport report) { }
        public void CheckpointDue(Model model, Optimizer optimizer, long step) { }
    }

    [Fact]
    public async Task Step_reports_forged_while_a_step_is_in_flight_change_nothing()
    {
        var plan = Plan(maxSteps: 5);
        var undisturbed = await InProcessCluster.Start(Sys, plan, Data, 2, name: "unforged").Completion.WaitAsync(Patience);

        const string name = "forged";
        var intruder = CreateTestProbe();
        IReadOnlyList<Akka.Actor.IActorRef> members = [];
        var forger = new Forger(at: 2, step =>
        {
            var coordinator = Sys.ActorSelection($"/user/{name}");
            // Generation 1, the step now in flight: from a stranger, and a diverged one.
            coordinator.Tell(new StepCompleted(1, step, 0, 64, 64, "forged", 0, 0, false, 0), intruder.Ref);
            coordinator.Tell(new StepCompleted(1, step, double.NaN, 0, 64, "forged", 0, 0, true, 0), intruder.Ref);
            // In a member's name: an older generation, and a step not yet dispatched.
            coordinator.Tell(new StepCompleted(0, step, 0, 64, 64, "forged", 0, 0, false, 0), members[0]);
            coordinator.Tell(new StepCompleted(1, step + 1, 0, 64, 64, "forged", 0, 0, false, 0), members[1]);
        });
        var cluster = InProcessCluster.Start(Sys, plan, Data, 2, observer: forger, name: name);
        members = cluster.Workers;
        var outcome = await cluster.Completion.WaitAsync(Patience);
        Assert.Equal(1, forger.Forged);
        Assert.True(outcome.Status == RunStatus.Completed, outcome.Error);
        Assert.Equal(5, outcome.Steps);
        Assert.Equal(undisturbed.ParameterSha256, outcome.ParameterSha256);
        Assert.Equal(undisturbed.LastEpochTrain, outcome.LastEpochTrain);
    }

    [Fact]
    public async Task A_worker_without_the_data_gets_the_samples_shipped_and_the_same_result()
    {
        var plan = Plan(maxSteps: 4);
        var local = await InProcessCluster.Start(Sys, plan, Data, 2, name: "with-data").Completion.WaitAsync(Patience);
        var done = new TaskCompletionSource<ClusterOutcome>();
        var settings = new CoordinatorActor.Settings(plan, Data, AllReduceAlgorithm.Ring, "t", 2, null, false);
        var coordinator = Sys.ActorOf(CoordinatorActor.Props(settings, new InProcessCluster.SilentObserver(), done), "shipping");
        var path = coordinator.Path.ToStringWithoutAddress();
        Sys.ActorOf(DistTrain.Worker.WorkerActor.Props(new(path, "t", Data, 1, "has-data")), "ship-1");
        Sys.ActorOf(DistTrain.Worker.WorkerActor.Props(new(path, "t", null, 1, "no-data")), "ship-2");
        var shipped = await done.Task.WaitAsync(Patience);
        Assert.Equal(local.ParameterSha256, shipped.ParameterSha256);
        Assert.Equal(local.LastTest, shipped.LastTest);
    }
}
