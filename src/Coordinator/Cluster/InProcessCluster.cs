using Akka.Actor;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker;

namespace DistTrain.Coordinator.Cluster;

/// A coordinator and N worker actors inside an existing actor system: what `--in-process` runs,
/// and what a user's own Akka.TestKit test starts to check that a model converges on a cluster.
/// The system needs <see cref="ProtocolConfig.Local"/> (pass it to the TestKit's constructor).
public sealed class InProcessCluster
{
    InProcessCluster(IActorRef coordinator, IReadOnlyList<IActorRef> workers, Task<ClusterOutcome> completion)
    {
        Coordinator = coordinator;
        Workers = workers;
        Completion = completion;
    }

    public IActorRef Coordinator { get; }
    public IReadOnlyList<IActorRef> Workers { get; }
    /// Completes when training ends (completed, diverged or failed).
    public Task<ClusterOutcome> Completion { get; }

    public static InProcessCluster Start(ActorSystem system, TrainingPlan plan, DatasetFolder data, int workers,
                                         AllReduceAlgorithm allReduce = AllReduceAlgorithm.Ring, ITrainingObserver? observer = null, string name = "coordinator")
    {
        var settings = new CoordinatorActor.Settings(plan, data, allReduce, JobToken: name, workers, Resume: null, CheckpointEveryEpoch: false);
        return Start(system, settings, workers, observer ?? new SilentObserver(), name);
    }

    internal static InProcessCluster Start(ActorSystem system, CoordinatorActor.Settings settings, int workers, ITrainingObserver observer, string name)
    {
        var done = new TaskCompletionSource<ClusterOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var coordinator = system.ActorOf(CoordinatorActor.Props(settings, observer, done), name);
        var path = coordinator.Path.ToStringWithoutAddress();
        var refs = Enumerable.Range(1, workers).Select(i => system.ActorOf(
            WorkerActor.Props(new WorkerActor.Settings(path, settings.JobToken, settings.Data, 1, $"{name}-worker-{i}")), $"{name}-worker-{i}")).ToList();
        return new InProcessCluster(coordinator, refs, done.Task);
    }

    /// Ignores every event; a test reads the outcome instead.
    public sealed class SilentObserver : ITrainingObserver
    {
        public void Log(string line) { }
        public void StepCompleted(StepReport report, StepTiming timing) { }
        public void EpochCompleted(EpochReport report) { }
        public void CheckpointDue(Model model, Optimizer optimizer, long step) { }
    }
}
