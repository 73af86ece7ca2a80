using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Serialization;
using MessagePack;

namespace DistTrain.Protocol;

/// Serializes every <see cref="IProtocolMessage"/> with MessagePack. The manifest is the short type
/// name; byte[] payloads (gradients, parameters, samples) are MessagePack bin blocks, copied once,
/// never encoded float by float. Input from the network is read with MessagePack's untrusted-data
/// limits, and anything malformed becomes a SerializationException that Akka logs and drops.
public sealed class ProtocolSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int Id = 7411;

    static readonly Dictionary<string, Type> TypesByManifest = typeof(IProtocolMessage).Assembly.GetTypes()
        .Where(t => typeof(IProtocolMessage).IsAssignableFrom(t) && t is { IsClass: true, IsAbstract: false })
        .ToDictionary(t => t.Name);

    static readonly MessagePackSerializerOptions Options =
        MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);

    public override int Identifier => Id;

    public static IReadOnlyCollection<Type> MessageTypes => TypesByManifest.Values;

    public override string Manifest(object o) => o is IProtocolMessage
        ? o.GetType().Name
        : throw new ArgumentException($"{o.GetType()} is not a DistTrain protocol message");

    public override byte[] ToBinary(object obj) => MessagePackSerializer.Serialize(obj.GetType(), obj, Options);

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!TypesByManifest.TryGetValue(manifest, out var type))
            throw new SerializationException($"unknown DistTrain message type '{manifest}'");
        try
        {
            return MessagePackSerializer.Deserialize(type, bytes, Options)
                   ?? throw new SerializationException($"malformed {manifest}: empty");
        }
        catch (MessagePackSerializationException e)
        {
            throw new SerializationException($"malformed {manifest} ({bytes.Length} bytes): {e.Message}");
        }
    }
}
