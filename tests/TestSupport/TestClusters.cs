using Akka.Actor;
using DistTrain.Coordinator.Cluster;

namespace DistTrain.TestSupport;

/// Clusters assembled through InProcessCluster, as a user's test assembles them, run to their end.
public static class TestClusters
{
    /// A coordinator with `settings` and `workers` worker actors in `system`; the outcome, within
    /// the patience of a training run. The coordinator's name is the job token unless given.
    public static Task<ClusterOutcome> Run(ActorSystem system, CoordinatorActor.Settings settings, int workers,
                                           ITrainingObserver? observer = null, string? name = null) =>
        InProcessCluster.Start(system, settings, workers, observer ?? new InProcessCluster.SilentObserver(), name ?? settings.JobToken)
            .Completion.WaitAsync(Patience.Training);
}
