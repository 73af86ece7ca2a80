using System.Runtime.Serialization;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Protocol;
using MessagePack;

namespace DistTrain.Cluster.Tests;

public class SerializationTests() : TestKit(ProtocolConfig.Local())
{
    static object Sample(Type t) => t.Name switch
    {
        nameof(RegisterWorker) => new RegisterWorker(1, "token", "abc", 2, "w"),
        nameof(WorkerRefused) => new WorkerRefused("wrong job token"),
        nameof(WorkerAccepted) => new WorkerAccepted(new JobPlan("{}", "cifar", "sha", 10, 5, 32, 32, 10, [0.49f, 0.48f, 0.45f], [0.25f, 0.24f, 0.26f], AllReduceAlgorithm.Ring, 3), true),
        nameof(ModelStateChunk) => new ModelStateChunk(1, 5, 0, 2, 7, [1, 2, 3]),
        nameof(StartGeneration) => new StartGeneration(2, ["akka://a/user/b", "akka://a/user/c"], 1, 5),
        nameof(RunStep) => new RunStep(1, 9, 0, 2, [9, 8], [1]),
        nameof(GradientChunk) => new GradientChunk(1, 9, 2, 1, 0, 1, [1, 2, 3, 4, 5, 6, 7, 8]),
        nameof(StepCompleted) => new StepCompleted(1, 9, 12.5, 30, 32, "ab", 0.1, 0.2, false, 123_456),
        nameof(EvaluateRange) => new EvaluateRange(1, 9, 0, 100, [], []),
        nameof(EvaluationCompleted) => new EvaluationCompleted(1, 9, 0, 3.5, 90, 100),
        nameof(RequestModelState) => new RequestModelState(3),
        nameof(JobFinished) => new JobFinished("completed"),
        nameof(WorkerFailed) => new WorkerFailed(2, "IndexOutOfRangeException: index was outside the bounds of the array", true),
        nameof(WorkerLeaving) => new WorkerLeaving("model resnet20 needs about 2.0 GiB on this worker with 4 thread(s), more than its --memory-budget 1.0 GiB"),
        _ => throw new InvalidOperationException($"no sample for {t.Name}: add one so the new message is checked"),
    };

    [Fact]
    public void Every_protocol_message_goes_through_the_MessagePack_serializer_and_round_trips()
    {
        Assert.NotEmpty(ProtocolSerializer.MessageTypes);
        foreach (var type in ProtocolSerializer.MessageTypes)
        {
            var message = Sample(type);
            var serializer = Sys.Serialization.FindSerializerFor(message);
            Assert.IsType<ProtocolSerializer>(serializer);   // never Akka's default JSON
            var bytes = serializer.ToBinary(message);
            var back = ((ProtocolSerializer)serializer).FromBinary(bytes, ((ProtocolSerializer)serializer).Manifest(message));
            Assert.Equal(MessagePackSerializer.Serialize(type, message), MessagePackSerializer.Serialize(type, back));
        }
    }

    [Fact]
    public void Malformed_or_unknown_messages_become_serialization_errors()
    {
        var serializer = (ProtocolSerializer)Sys.Serialization.FindSerializerForType(typeof(RunStep));
        Assert.Throws<SerializationException>(() => serializer.FromBinary([0xC1, 0x00, 0xFF], nameof(RunStep)));
        Assert.Throws<SerializationException>(() => serializer.FromBinary([0x90], "Exploit"));
        var truncated = serializer.ToBinary(new GradientChunk(1, 1, 0, 0, 0, 1, new byte[64]))[..20];
        Assert.Throws<SerializationException>(() => serializer.FromBinary(truncated, nameof(GradientChunk)));
    }
}
