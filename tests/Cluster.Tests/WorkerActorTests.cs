using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker;

namespace DistTrain.Cluster.Tests;

/// One real worker, with a TestProbe playing both the coordinator and its ring neighbour.
public class WorkerActorTests() : TestKit(ProtocolConfig.Local(serializeMessages: true))
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public void A_peer_chunk_that_arrives_before_RunStep_is_not_lost()
    {
        var data = DatasetFolder.Synthetic(256, 64, seed: 4);
        var plan = new TrainingPlan { Model = Presets.LeNet5, GlobalBatch = 32, MicroBatch = 16, Epochs = 1, Seed = 3 };
        var peer = CreateTestProbe();   // coordinator and rank 1 of a ring of two
        var worker = Sys.ActorOf(WorkerActor.Props(new(peer.Ref.Path.ToStringWithoutAddress(), "t", data, 1, "w")), "early-bird");

        peer.ExpectMsg<RegisterWorker>(Patience);
        peer.IgnoreMessages<RegisterWorker>();   // the worker retries every second until accepted; under load a repeat may queue
        peer.Reply(new WorkerAccepted(JobPlan.From(plan, data, "ring"), ShipsSamples: false));
        var model = Model.Create(plan.Model);
        model.Initialize(plan.Seed);
        var state = Payload.FromFloats(model.Parameters).Concat(Payload.FromFloats(new float[model.ParameterCount])).ToArray();
        peer.Reply(new ModelStateChunk(0, 0, 0, 1, 0, state));
        var ring = new[] { Akka.Serialization.Serialization.SerializedActorPath(worker), Akka.Serialization.Serialization.SerializedActorPath(peer.Ref) };
        peer.Reply(new StartGeneration(1, ring, 0));

        // Rank 1's reduce-scatter chunk (segment 1) arrives first, RunStep second.
        int n = model.ParameterCount, half = n / 2;
        peer.Reply(new GradientChunk(1, 0, 0, 1, 0, 1, Payload.FromLongs(new long[n - half])));
        peer.Reply(new RunStep(1, 0, 0, 1, [], []));

        var own = peer.ExpectMsg<GradientChunk>(Patience);         // round 0: its segment 0
        Assert.Equal((0, 0), (own.Round, own.Segment));
        var gathered = peer.ExpectMsg<GradientChunk>(Patience);    // round 1: the early chunk was used
        Assert.Equal((1, 1), (gathered.Round, gathered.Segment));
        peer.Reply(new GradientChunk(1, 0, 1, 0, 0, 1, new byte[half * 8]));
        var done = peer.ExpectMsg<StepCompleted>(Patience);
        Assert.Equal((1, 0L, 16L), (done.Generation, done.Step, done.Samples));
    }
}
