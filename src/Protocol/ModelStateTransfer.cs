using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Protocol;

/// Moves a replica's state (parameters, then each optimizer state vector, as float32
/// little-endian) in <see cref="ModelStateChunk"/>s below the frame size, and puts it back.
public static class ModelStateTransfer
{
    public static IEnumerable<ModelStateChunk> Chunks(Model model, Optimizer optimizer, int generation, long step)
    {
        var bytes = new byte[ByteLength(model, optimizer)];
        int p = model.ParameterCount;
        Payload.FromFloats(model.Parameters).CopyTo(bytes, 0);
        for (int i = 0; i < optimizer.State.Count; i++) Payload.FromFloats(optimizer.State[i].Values).CopyTo(bytes, 4 * p * (i + 1));
        int parts = Payload.Parts(bytes.Length, 1);
        for (int part = 0; part < parts; part++)
        {
            var (start, n) = Payload.Part(0, bytes.Length, part, parts);
            yield return new ModelStateChunk(generation, step, part, parts, optimizer.Steps, bytes.AsSpan(start, n).ToArray());
        }
    }

    static int ByteLength(Model model, Optimizer optimizer) => 4 * model.ParameterCount * (1 + optimizer.State.Count);

    /// Collects the chunks of one transfer; when the last arrives, loads them into the model and optimizer.
    public sealed class Assembler(Model model, Optimizer optimizer)
    {
        readonly byte[] _bytes = new byte[ByteLength(model, optimizer)];
        readonly HashSet<int> _received = [];

        /// True once complete (the state is then loaded). A chunk that does not fit throws
        /// InvalidDataException and is not applied.
        public bool Add(ModelStateChunk c)
        {
            int parts = Payload.Parts(_bytes.Length, 1);
            if (c.Parts != parts || (uint)c.Part >= (uint)parts)
                throw new InvalidDataException($"model state part {c.Part} of {c.Parts}, expected parts of {parts}");
            var (start, length) = Payload.Part(0, _bytes.Length, c.Part, parts);
            if (c.Bytes.Length != length) throw new InvalidDataException($"model state part {c.Part} has {c.Bytes.Length} bytes, expected {length}");
            if (!_received.Add(c.Part)) throw new InvalidDataException($"model state part {c.Part} received twice");
            c.Bytes.CopyTo(_bytes, start);
            if (_received.Count < parts) return false;
            int p = model.ParameterCount;
            Payload.ToFloats(_bytes.AsSpan(0, 4 * p), model.Parameters);
            for (int i = 0; i < optimizer.State.Count; i++) Payload.ToFloats(_bytes.AsSpan(4 * p * (i + 1), 4 * p), optimizer.State[i].Values);
            optimizer.Steps = c.OptimizerSteps;
            return true;
        }
    }
}
