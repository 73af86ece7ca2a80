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
        Model = model ?? Presets.LeNet5, Optimizer = new OptimizerSettings("momentum"), LearningRate = 0.02,
        GlobalBatch = 64, MicroBatch = 16, Epochs = 2, Seed = 7, MaxSteps = maxSteps,
    };

    static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task Three_workers_converge_and_replicas_stay_bitwise_equal()
    {
        // 2 epochs of 12 steps on 768 separable samples: a working cluster ends well above 90%
        // on the held-out split (chance: 10%) with the training loss far below ln(10) = 2.3.
        var cluster = InProcessCluster.Start(Sys, Plan(maxSteps: null), Data, workers: 3, name: "converge");
        var outcome = await cluster.Completion.WaitAsync(Patience);
        Assert.Equal("completed", outcome.Status);
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
            Assert.Equal("completed", outcome.Status);
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
        // A stray step report from a non-member changes nothing.
        coordinator.Tell(new StepCompleted(1, 0, 0, 0, 64, "forged", 0, 0, false), intruder.Ref);

        Sys.ActorOf(DistTrain.Worker.WorkerActor.Props(new(coordinator.Path.ToStringWithoutAddress(), "secret", Data, 1, "honest")), "honest");
        var outcome = await done.Task.WaitAsync(Patience);
        Assert.Equal("completed", outcome.Status);
        Assert.Equal(undisturbed.ParameterSha256, outcome.ParameterSha256);
        intruder.ExpectNoMsg(TimeSpan.FromMilliseconds(200));   // the intruder was never sent work
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
