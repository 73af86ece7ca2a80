using MessagePack;

namespace DistTrain.Protocol;

/// Every message that crosses a process boundary implements this; the HOCON binds it to
/// <see cref="ProtocolSerializer"/>, so none of them ever goes through Akka's default JSON.
public interface IProtocolMessage;

/// A message that belongs to one generation of the job: older generations are ignored.
public interface IGenerationMessage : IProtocolMessage
{
    int Generation { get; }
}

public static class ProtocolVersion
{
    /// 2: StartGeneration carries the step the generation starts at (replicas ahead of it roll back).
    /// 3: workers announce a data-plane port; StartGeneration carries the ring's data endpoints.
    /// 4: StepCompleted carries XxHash128 of the parameters instead of SHA-256 (8x faster per step).
    /// 5: JobPlan.AllReduce is the AllReduceAlgorithm enum (an integer on the wire), no longer a string.
    /// 6: gradient chunks carry the sums in GradientCodec's encoding instead of raw int64s;
    ///    StepCompleted carries the payload bytes the worker sent in the all-reduce.
    /// 7: JobPlan carries the samples' channel count and a mean and standard deviation per channel.
    /// 8: WorkerFailed: a worker that cannot go on says why, and the job ends at once.
    /// 9: WorkerLeaving: a worker that cannot take part (its machine is too small for the model)
    ///    says why and leaves; the job goes on without it.
    public const int Current = 9;
}

// ---- Join ----------------------------------------------------------------------------------

/// worker -> coordinator: asks to take part. DatasetSha256 is empty when the worker holds no data.
/// DataPort is the worker's gradient data-plane port on its Akka host (0: chunks go over Akka.Remote).
[MessagePackObject]
public sealed record RegisterWorker(
    [property: Key(0)] int ProtocolVersion,
    [property: Key(1)] string JobToken,
    [property: Key(2)] string DatasetSha256,
    [property: Key(3)] int Threads,
    [property: Key(4)] string Name,
    [property: Key(5)] int DataPort = 0) : IProtocolMessage;

/// coordinator -> worker: not admitted, and why.
[MessagePackObject]
public sealed record WorkerRefused([property: Key(0)] string Reason) : IProtocolMessage;

/// coordinator -> worker: admitted; the model state follows as <see cref="ModelStateChunk"/>s.
[MessagePackObject]
public sealed record WorkerAccepted(
    [property: Key(0)] JobPlan Plan,
    [property: Key(1)] bool ShipsSamples) : IProtocolMessage;

/// coordinator -> worker: parameters then optimizer state (float32 little-endian), in parts.
[MessagePackObject]
public sealed record ModelStateChunk(
    [property: Key(0)] int Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int Part,
    [property: Key(3)] int Parts,
    [property: Key(4)] long OptimizerSteps,
    [property: Key(5)] byte[] Bytes) : IGenerationMessage;

// ---- Membership ------------------------------------------------------------------------------

/// coordinator -> worker: a new generation with this ring (actor paths, in rank order), whose
/// first step is Step. A replica that already applied step Step (the step in flight when a peer
/// was lost) rolls that update back, so the step is redone by the live workers exactly once.
/// DataEndpoints ("host:port" in rank order, "" for none) are the members' gradient data planes.
[MessagePackObject]
public sealed record StartGeneration(
    [property: Key(0)] int Generation,
    [property: Key(1)] string[] Ring,
    [property: Key(2)] int Rank,
    [property: Key(3)] long Step,
    [property: Key(4)] string[]? DataEndpoints = null) : IGenerationMessage;

// ---- Steps -----------------------------------------------------------------------------------

/// coordinator -> worker: compute micro-batches [FirstMicroBatch, FirstMicroBatch + MicroBatches)
/// of global step Step, all-reduce, update. Pixels/Labels carry the samples when shipped, else empty.
[MessagePackObject]
public sealed record RunStep(
    [property: Key(0)] int Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int FirstMicroBatch,
    [property: Key(3)] int MicroBatches,
    [property: Key(4)] byte[] Pixels,
    [property: Key(5)] byte[] Labels) : IGenerationMessage;

/// Where a gradient chunk belongs: generation, step, round, segment, part of parts. The Akka
/// message and the data plane's frame carry the same fields.
public readonly record struct ChunkHeader(int Generation, long Step, int Round, int Segment, int Part, int Parts);

/// worker -> worker (ring) or worker <-> coordinator (star): one part of a segment of the
/// fixed-point gradient sum, exactly the part's values in <see cref="GradientCodec"/>'s encoding.
[MessagePackObject]
public sealed record GradientChunk(
    [property: Key(0)] int Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int Round,
    [property: Key(3)] int Segment,
    [property: Key(4)] int Part,
    [property: Key(5)] int Parts,
    [property: Key(6)] byte[] Payload) : IGenerationMessage
{
    [IgnoreMember] public ChunkHeader Header => new(Generation, Step, Round, Segment, Part, Parts);

    public static GradientChunk Of(ChunkHeader h, byte[] payload) => new(h.Generation, h.Step, h.Round, h.Segment, h.Part, h.Parts, payload);
}

/// worker -> coordinator: step done; the parameter hash (XxHash128 of the float32 parameters,
/// little-endian, in hex: <see cref="DistTrain.Cnn.Training.ParameterHash.ReplicaHex"/>) lets the
/// coordinator check the replicas agree. AllReduceBytes: the gradient payload this worker sent in
/// the step's all-reduce, encoded (data plane and messages; frame headers and envelopes not counted).
[MessagePackObject]
public sealed record StepCompleted(
    [property: Key(0)] int Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] double LossSum,
    [property: Key(3)] long Correct,
    [property: Key(4)] long Samples,
    [property: Key(5)] string ParameterHash,
    [property: Key(6)] double ComputeSeconds,
    [property: Key(7)] double ReduceSeconds,
    [property: Key(8)] bool Diverged,
    [property: Key(9)] long AllReduceBytes) : IGenerationMessage;

// ---- Evaluation ------------------------------------------------------------------------------

/// coordinator -> worker: evaluate test samples [Start, Start + Count) (shipped when Pixels is non-empty).
[MessagePackObject]
public sealed record EvaluateRange(
    [property: Key(0)] int Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int Start,
    [property: Key(3)] int Count,
    [property: Key(4)] byte[] Pixels,
    [property: Key(5)] byte[] Labels) : IGenerationMessage;

[MessagePackObject]
public sealed record EvaluationCompleted(
    [property: Key(0)] int Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int Start,
    [property: Key(3)] double LossSum,
    [property: Key(4)] long Correct,
    [property: Key(5)] long Samples) : IGenerationMessage;

/// coordinator -> worker: send your parameters and optimizer state (for checkpoints and the report).
[MessagePackObject]
public sealed record RequestModelState([property: Key(0)] int Generation) : IGenerationMessage;

/// worker -> coordinator: this worker cannot go on (an exception in its step, evaluation or state
/// transfer); the job ends with Reason. BadInput: the data or the model is at fault (exit 2), not
/// the machine (memory, a bug: exit 4).
[MessagePackObject]
public sealed record WorkerFailed([property: Key(0)] int Generation, [property: Key(1)] string Reason, [property: Key(2)] bool BadInput) : IProtocolMessage;

/// worker -> coordinator: this worker cannot take part (its --memory-budget is below what the
/// job's model needs) and leaves; unlike WorkerFailed the job goes on with the others, since
/// another machine may well hold the model.
[MessagePackObject]
public sealed record WorkerLeaving([property: Key(0)] string Reason) : IProtocolMessage;

/// coordinator -> worker: the job is over; the worker process exits.
[MessagePackObject]
public sealed record JobFinished([property: Key(0)] string Status) : IProtocolMessage;
