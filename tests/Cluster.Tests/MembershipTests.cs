using Akka.Actor;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;
using DistTrain.Worker;
using AkkaCluster = Akka.Cluster.Cluster;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// The membership-before-token gap, on real cluster nodes over loopback: a worker refused for its
/// token never becomes a cluster member, and a node that joins the cluster without registering is
/// removed from it.
public sealed class MembershipTests : IAsyncLifetime
{
    ActorSystem _coordinatorSystem = null!;
    readonly List<ActorSystem> _others = [];
    Address _address = null!;
    readonly TaskCompletionSource<ClusterOutcome> _done = new();

    public Task InitializeAsync()
    {
        _coordinatorSystem = ActorSystem.Create(ProtocolConfig.SystemName, ProtocolConfig.Cluster("coordinator", "127.0.0.1", 0));
        var cluster = AkkaCluster.Get(_coordinatorSystem);
        cluster.Join(cluster.SelfAddress);
        _address = cluster.SelfAddress;
        var data = DatasetFolder.Synthetic(128, 32, seed: 1);
        var plan = new TrainingPlan { Model = Presets.LeNet5, GlobalBatch = 32, MicroBatch = 16, Epochs = 1, Seed = 1, MaxSteps = 2 };
        // Expects 2 workers, none of which comes: nothing trains while the test pokes at membership.
        var settings = new CoordinatorActor.Settings(plan, data, AllReduceAlgorithm.Ring, "the-token", 2, null, false,
            WorkerWait: TimeSpan.FromMinutes(5), AdmissionGrace: TimeSpan.FromSeconds(2));
        _coordinatorSystem.ActorOf(CoordinatorActor.Props(settings, new InProcessCluster.SilentObserver(), _done), ProtocolConfig.CoordinatorName);
        return Task.CompletedTask;
    }

    ActorSystem Node()
    {
        var system = ActorSystem.Create(ProtocolConfig.SystemName, ProtocolConfig.Cluster("worker", "127.0.0.1", 0));
        _others.Add(system);
        return system;
    }

    int Members => AkkaCluster.Get(_coordinatorSystem).State.Members.Count;

    [Fact]
    public async Task A_worker_with_the_wrong_token_is_refused_and_never_joins_the_cluster()
    {
        var system = Node();
        var stopped = new TaskCompletionSource<string?>();
        var path = $"{_address}/user/{ProtocolConfig.CoordinatorName}";
        system.ActorOf(WorkerActor.Props(new WorkerActor.Settings(path, "not-the-token", null, 1, "stranger"), e => stopped.TrySetResult(e)));
        Assert.Equal("refused by the coordinator: wrong job token", await stopped.Task.WaitAsync(Patience.Reply));
        await Task.Delay(1000);
        Assert.Equal(1, Members);   // the coordinator alone
    }

    [Fact]
    public async Task A_node_that_joins_the_cluster_without_registering_is_downed()
    {
        var system = Node();
        var removed = new TaskCompletionSource();
        var intruder = AkkaCluster.Get(system);
        intruder.RegisterOnMemberRemoved(() => removed.TrySetResult());
        intruder.Join(_address);
        await removed.Task.WaitAsync(Patience.Helper);
        Assert.DoesNotContain(AkkaCluster.Get(_coordinatorSystem).State.Members, m => m.Address.Equals(intruder.SelfAddress) && m.Status == Akka.Cluster.MemberStatus.Up);
    }

    [Fact]
    public async Task Oversized_and_forged_messages_from_another_node_leave_the_coordinator_working()
    {
        var system = Node();
        var probe = new TaskCompletionSource<object>();
        var inbox = system.ActorOf(Props.Create(() => new Forward(probe)), "inbox");
        var coordinator = system.ActorSelection($"{_address}/user/{ProtocolConfig.CoordinatorName}");
        // Above the 4 MiB frame: the transport drops it (and logs); below it but absurd: refused as a wrong token.
        coordinator.Tell(new RegisterWorker(ProtocolVersion.Current, new string('x', 5 << 20), "", 1, "huge"), inbox);
        // Nothing trains here, so no step takes this report; the step-commit guard is tested while a
        // step is in flight in InProcessClusterTests. Here: it crosses remoting and ends nothing.
        coordinator.Tell(new StepCompleted(1, 0, double.NaN, 0, 64, "forged", 0, 0, true, 0), inbox);
        coordinator.Tell(new GradientChunk(1, 0, 0, 0, 0, 1, new byte[3 << 20]), inbox);
        coordinator.Tell(new RegisterWorker(ProtocolVersion.Current, new string('y', 3 << 20), "", 1, "large"), inbox);
        var answer = await probe.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("wrong job token", Assert.IsType<WorkerRefused>(answer).Reason);
        Assert.False(_done.Task.IsCompleted);   // nothing ended, diverged or failed the job
    }

    sealed class Forward : ReceiveActor
    {
        public Forward(TaskCompletionSource<object> first) => ReceiveAny(m => first.TrySetResult(m));
    }

    public async Task DisposeAsync()
    {
        foreach (var s in _others) await s.Terminate();
        await _coordinatorSystem.Terminate();
    }
}
