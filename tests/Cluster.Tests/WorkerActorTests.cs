using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;
using DistTrain.Worker;
using DistTrain.Worker.DataPlane;
using DistTrain.TestSupport;

namespace DistTrain.Cluster.Tests;

/// One real worker, with a TestProbe playing both the coordinator and its ring neighbour.
public sealed class WorkerActorTests() : TestKit(ProtocolConfig.Local(serializeMessages: true))
{
    static readonly DatasetFolder Data = DatasetFolder.Synthetic(256, 64, seed: 4);
    static readonly TrainingPlan Plan = new() { Model = Presets.LeNet5, GlobalBatch = 32, MicroBatch = 16, Epochs = 1, Seed = 3 };

    /// A worker accepted by `coordinator` (a probe) with the initial state of the plan.
    IActorRef AcceptedWorker(Akka.TestKit.TestProbe coordinator, string name)
    {
        // The worker registers at once and retries every second until accepted: accept it without
        // waiting for a registration, so no repeat can be left in the probe's queue.
        coordinator.IgnoreMessages<RegisterWorker>();
        var worker = Sys.ActorOf(WorkerActor.Props(new(coordinator.Ref.Path.ToStringWithoutAddress(), "t", Data, 1, "w")), name);
        coordinator.Send(worker, new WorkerAccepted(JobPlan.From(Plan, Data, AllReduceAlgorithm.Ring), ShipsSamples: false));
        var model = Model.Create(Plan.Model);
        model.Initialize(Plan.Seed);
        foreach (var chunk in ModelStateTransfer.Chunks(model, Optimizer.Create(Plan.Optimizer, model.ParameterCount), 0, 0))
            coordinator.Send(worker, chunk);
        return worker;
    }

    /// The pool of this test's data-plane chunks, counted apart from everyone else's.
    readonly ChunkBuffers _buffers = new();

    /// A chunk as the data plane delivers it: on a leased buffer the worker must give back.
    ChunkLease Lease(ChunkHeader header, long[] values) => ChunkLease.Of(_buffers, header, values);

    static string[] Ring(params IActorRef[] members) => members.Select(Akka.Serialization.Serialization.SerializedActorPath).ToArray();

    [Fact]
    public void A_replica_that_applied_the_step_in_flight_rolls_it_back_when_a_new_generation_redoes_it()
    {
        var coordinator = CreateTestProbe();
        var worker = AcceptedWorker(coordinator, "rollback");
        coordinator.Send(worker, new StartGeneration(1, Ring(worker), 0, 0));   // a ring of one: the step completes at once
        coordinator.Send(worker, new RunStep(1, 0, 0, 2, [], []));
        var first = coordinator.ExpectMsg<StepCompleted>(Patience.Reply);

        // The coordinator lost a peer before committing step 0: generation 2 redoes step 0.
        coordinator.Send(worker, new StartGeneration(2, Ring(worker), 0, 0));
        coordinator.Send(worker, new RunStep(2, 0, 0, 2, [], []));
        var redone = coordinator.ExpectMsg<StepCompleted>(Patience.Reply);
        Assert.Equal((2, 0L), (redone.Generation, redone.Step));
        Assert.Equal(first.ParameterHash, redone.ParameterHash);   // applied once, not twice

        // A generation that starts after the committed step does not roll back.
        coordinator.Send(worker, new StartGeneration(3, Ring(worker), 0, 1));
        coordinator.Send(worker, new RunStep(3, 1, 0, 2, [], []));
        var next = coordinator.ExpectMsg<StepCompleted>(Patience.Reply);
        Assert.Equal(1L, next.Step);
        Assert.NotEqual(first.ParameterHash, next.ParameterHash);
    }

    [Fact]
    public void Steering_messages_from_anyone_but_the_coordinator_change_nothing()
    {
        var coordinator = CreateTestProbe();
        var stranger = CreateTestProbe();
        var worker = AcceptedWorker(coordinator, "steered");
        stranger.Send(worker, new StartGeneration(7, Ring(worker), 0, 0));
        stranger.Send(worker, new RunStep(7, 0, 0, 2, [], []));
        stranger.Send(worker, new JobFinished("completed"));
        stranger.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        coordinator.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        // The worker still follows its coordinator, in generation 1 (the stranger's 7 was never taken).
        coordinator.Send(worker, new StartGeneration(1, Ring(worker), 0, 0));
        coordinator.Send(worker, new RunStep(1, 0, 0, 2, [], []));
        var done = coordinator.ExpectMsg<StepCompleted>(Patience.Reply);

        var control = CreateTestProbe();
        var twin = AcceptedWorker(control, "twin");
        control.Send(twin, new StartGeneration(1, Ring(twin), 0, 0));
        control.Send(twin, new RunStep(1, 0, 0, 2, [], []));
        Assert.Equal(control.ExpectMsg<StepCompleted>(Patience.Reply).ParameterHash, done.ParameterHash);
    }

    [Fact]
    public void A_forged_gradient_chunk_from_outside_the_ring_is_not_summed()
    {
        string Run(string name, bool forge)
        {
            var peer = CreateTestProbe();   // coordinator and rank 1 of a ring of two
            var worker = AcceptedWorker(peer, name);
            peer.Send(worker, new StartGeneration(1, Ring(worker, peer.Ref), 0, 0));
            int n = Model.Create(Plan.Model).ParameterCount, half = n / 2;
            if (forge)
            {
                var forged = new long[n - half];
                Array.Fill(forged, 1L << 40);   // +1.0 on every gradient of the segment
                CreateTestProbe().Send(worker, new GradientChunk(1, 0, 0, 1, 0, 1, GradientCodec.Encode(forged)));
            }
            peer.Send(worker, new RunStep(1, 0, 0, 1, [], []));
            peer.ExpectMsg<GradientChunk>(Patience.Reply);                   // round 0: its own segment 0
            peer.Send(worker, new GradientChunk(1, 0, 0, 1, 0, 1, GradientCodec.Encode(new long[n - half])));
            peer.ExpectMsg<GradientChunk>(Patience.Reply);                   // round 1: the reduced segment 1
            peer.Send(worker, new GradientChunk(1, 0, 1, 0, 0, 1, GradientCodec.Encode(new long[half])));
            return peer.ExpectMsg<StepCompleted>(Patience.Reply).ParameterHash;
        }
        Assert.Equal(Run("honest-ring", forge: false), Run("forged-ring", forge: true));
    }

    [Fact]
    public void A_data_plane_chunk_counts_only_when_it_comes_from_the_predecessors_ring_path()
    {
        // The data plane hands the actor RingChunk(senderRingPath, chunk) after the sender proved it
        // holds the job token; the actor still sums only what its ring predecessor sent.
        string Run(string name, bool viaDataPlane, bool forge)
        {
            var peer = CreateTestProbe();
            var worker = AcceptedWorker(peer, name);
            var ring = Ring(worker, peer.Ref);
            peer.Send(worker, new StartGeneration(1, ring, 0, 0));
            int n = Model.Create(Plan.Model).ParameterCount, half = n / 2;
            object Deliver(ChunkHeader h, long[] values) =>
                viaDataPlane ? new WorkerActor.RingChunk(ring[1], Lease(h, values)) : GradientChunk.Of(h, GradientCodec.Encode(values));
            if (forge)
            {
                var forged = new long[n - half];
                Array.Fill(forged, 1L << 40);
                worker.Tell(new WorkerActor.RingChunk(ring[0], Lease(new(1, 0, 0, 1, 0, 1), forged)));   // its own path, not its predecessor's
                worker.Tell(new WorkerActor.RingChunk("akka.tcp://disttrain@10.9.9.9:1/user/worker", Lease(new(1, 0, 0, 1, 0, 1), forged)));
            }
            peer.Send(worker, new RunStep(1, 0, 0, 1, [], []));
            peer.ExpectMsg<GradientChunk>(Patience.Reply);
            peer.Send(worker, Deliver(new(1, 0, 0, 1, 0, 1), new long[n - half]));
            peer.ExpectMsg<GradientChunk>(Patience.Reply);
            peer.Send(worker, Deliver(new(1, 0, 1, 0, 0, 1), new long[half]));
            return peer.ExpectMsg<StepCompleted>(Patience.Reply).ParameterHash;
        }
        string overAkka = Run("akka-ring", viaDataPlane: false, forge: false);
        Assert.Equal(overAkka, Run("plane-ring", viaDataPlane: true, forge: false));
        Assert.Equal(overAkka, Run("plane-forged", viaDataPlane: true, forge: true));
    }

    [Fact]
    public void A_peer_chunk_that_arrives_before_RunStep_is_not_lost()
    {
        var peer = CreateTestProbe();   // coordinator and rank 1 of a ring of two
        var worker = AcceptedWorker(peer, "early-bird");
        peer.Send(worker, new StartGeneration(1, Ring(worker, peer.Ref), 0, 0));

        // Rank 1's reduce-scatter chunk (segment 1) arrives first, RunStep second.
        int n = Model.Create(Plan.Model).ParameterCount, half = n / 2;
        peer.Send(worker, new GradientChunk(1, 0, 0, 1, 0, 1, GradientCodec.Encode(new long[n - half])));
        peer.Send(worker, new RunStep(1, 0, 0, 1, [], []));

        var own = peer.ExpectMsg<GradientChunk>(Patience.Reply);         // round 0: its segment 0
        Assert.Equal((0, 0), (own.Round, own.Segment));
        var gathered = peer.ExpectMsg<GradientChunk>(Patience.Reply);    // round 1: the early chunk was used
        Assert.Equal((1, 1), (gathered.Round, gathered.Segment));
        peer.Send(worker, new GradientChunk(1, 0, 1, 0, 0, 1, GradientCodec.Encode(new long[half])));
        var done = peer.ExpectMsg<StepCompleted>(Patience.Reply);
        Assert.Equal((1, 0L, 16L), (done.Generation, done.Step, done.Samples));
    }

    [Fact]
    public void A_data_plane_chunk_gives_its_buffer_back_whether_it_is_handled_stale_or_rejected()
    {
        var peer = CreateTestProbe();   // coordinator and rank 1 of a ring of two
        var worker = AcceptedWorker(peer, "leases");
        var ring = Ring(worker, peer.Ref);
        peer.Send(worker, new StartGeneration(1, ring, 0, 0));
        int n = Model.Create(Plan.Model).ParameterCount, half = n / 2;
        void Deliver(string from, ChunkHeader h, int values) => worker.Tell(new WorkerActor.RingChunk(from, Lease(h, new long[values])));

        Deliver(ring[1], new(0, 0, 0, 1, 0, 1), n - half);       // stale: an older generation, before the step
        Deliver(ring[1], new(1, 0, 0, 1, 0, 1), n - half);       // early: kept, then handled in the step
        peer.Send(worker, new RunStep(1, 0, 0, 1, [], []));
        peer.ExpectMsg<GradientChunk>(Patience.Reply);                 // round 0: its own segment 0
        peer.ExpectMsg<GradientChunk>(Patience.Reply);                 // round 1: the early chunk was handled
        Deliver(ring[0], new(1, 0, 1, 0, 0, 1), half);           // rejected: not the predecessor
        Deliver(ring[1], new(1, 0, 0, 1, 0, 1), n - half);       // rejected: a duplicate
        Deliver(ring[1], new(0, 0, 1, 0, 0, 1), half);           // stale: an older generation, mid-step
        Deliver(ring[1], new(1, 0, 1, 0, 0, 1), half);           // handled: completes the step
        Assert.Equal(1L, peer.ExpectMsg<StepCompleted>(Patience.Reply).Generation);
        AwaitCondition(() => _buffers.Returned == _buffers.Rented, Patience.Reply);
        Assert.Equal(6, _buffers.Rented);
    }
}
