using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.Protocol;

namespace DistTrain.Coordinator.Cluster;

/// Copies one replica's parameters and optimizer state (from rank 0, by Id) into the coordinator's
/// model, and checks them against the hash every replica reported for the last committed step.
public sealed class StateFetch(Model model, Optimizer optimizer, int generation, string source, string expectedHash)
{
    readonly ModelStateTransfer.Assembler _incoming = new(model, optimizer);
    bool _complete;

    public int Generation => generation;

    /// True when this chunk completes the state (it is then loaded). Chunks of another generation or
    /// from another sender are ignored; a chunk that does not fit throws InvalidDataException.
    public bool Add(string from, ModelStateChunk m)
    {
        if (_complete || m.Generation != generation || from != source) return false;
        return _complete = _incoming.Add(m);
    }

    /// The loaded parameters are the ones the replicas reported (hash); only then are they the run's result.
    public bool Matches => _complete && ParameterHash.ReplicaHex(model.Parameters) == expectedHash;
}
