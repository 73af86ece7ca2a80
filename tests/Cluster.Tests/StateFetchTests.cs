using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;

namespace DistTrain.Cluster.Tests;

/// StateFetch as a plain class: assembling rank 0's state and checking it against the replicas' hash.
public sealed class StateFetchTests
{
    static (Model Model, Optimizer Optimizer) Replica(ulong seed)
    {
        var model = Model.Create(Presets.LeNet5);
        model.Initialize(seed);
        var optimizer = Optimizer.Create(new OptimizerSettings(OptimizerKind.Adam), model.ParameterCount);
        for (int i = 0; i < optimizer.State[0].Values.Length; i += 97) optimizer.State[0].Values[i] = i;
        optimizer.Steps = (long)seed;
        return (model, optimizer);
    }

    [Fact]
    public void The_state_of_rank_0_is_loaded_when_complete_and_matches_the_hash_it_reported()
    {
        var (source, sourceOptimizer) = Replica(5);
        var (model, optimizer) = Replica(6);
        var fetch = new StateFetch(model, optimizer, generation: 3, source: "rank-0", ParameterHash.ReplicaHex(source.Parameters));
        var chunks = ModelStateTransfer.Chunks(source, sourceOptimizer, 3, 12).ToList();
        Assert.True(chunks.Count > 1);
        for (int i = 0; i < chunks.Count - 1; i++) Assert.False(fetch.Add("rank-0", chunks[i]));
        Assert.False(fetch.Matches);   // nothing is loaded before the last part
        Assert.True(fetch.Add("rank-0", chunks[^1]));
        Assert.True(fetch.Matches);
        Assert.Equal(source.Parameters.ToArray(), model.Parameters.ToArray());
        Assert.Equal(sourceOptimizer.State[0].Values, optimizer.State[0].Values);
        Assert.Equal(5, optimizer.Steps);
    }

    [Fact]
    public void Chunks_from_another_sender_or_generation_are_ignored()
    {
        var (source, sourceOptimizer) = Replica(5);
        var (model, optimizer) = Replica(6);
        var fetch = new StateFetch(model, optimizer, 3, "rank-0", ParameterHash.ReplicaHex(source.Parameters));
        foreach (var c in ModelStateTransfer.Chunks(source, sourceOptimizer, 3, 12)) Assert.False(fetch.Add("rank-1", c));
        foreach (var c in ModelStateTransfer.Chunks(source, sourceOptimizer, 2, 12)) Assert.False(fetch.Add("rank-0", c));
        Assert.False(fetch.Matches);
        Assert.NotEqual(source.Parameters.ToArray(), model.Parameters.ToArray());
    }

    [Fact]
    public void A_state_that_is_not_the_one_the_replicas_reported_does_not_match()
    {
        var (source, sourceOptimizer) = Replica(5);
        var (model, optimizer) = Replica(6);
        var fetch = new StateFetch(model, optimizer, 3, "rank-0", ParameterHash.ReplicaHex(model.Parameters));
        bool complete = false;
        foreach (var c in ModelStateTransfer.Chunks(source, sourceOptimizer, 3, 12)) complete = fetch.Add("rank-0", c);
        Assert.True(complete);
        Assert.False(fetch.Matches);
    }

    [Fact]
    public void A_part_that_does_not_fit_is_refused_with_the_reason()
    {
        var (model, optimizer) = Replica(6);
        var fetch = new StateFetch(model, optimizer, 3, "rank-0", "");
        var e = Assert.Throws<InvalidDataException>(() => fetch.Add("rank-0", new ModelStateChunk(3, 12, 0, 1, 0, new byte[8])));
        Assert.StartsWith("model state part 0 of 1, expected parts of", e.Message);
    }
}
