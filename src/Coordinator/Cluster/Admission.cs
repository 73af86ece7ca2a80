using System.Security.Cryptography;
using System.Text;
using Akka.Actor;
using Akka.Cluster;
using DistTrain.Cnn.Data;
using DistTrain.Protocol;

namespace DistTrain.Coordinator.Cluster;

/// Who may take part in the job: the protocol version, the job token (compared in constant time),
/// the dataset a worker holds and whether the samples can be shipped to one without it, and which
/// cluster members are strangers (joined the cluster without an admitted worker).
public sealed class Admission(string jobToken, DatasetFolder data, int globalBatch)
{
    /// Why the worker is refused, or null when it is accepted. A repeated registration of a worker
    /// already admitted (`known`) passes on version and token alone.
    public string? Refusal(RegisterWorker r, bool known)
    {
        if (r.ProtocolVersion != ProtocolVersion.Current) return $"protocol version {r.ProtocolVersion}, the coordinator speaks {ProtocolVersion.Current}";
        if (!TokenEquals(r.JobToken, jobToken)) return "wrong job token";
        if (known) return null;
        if (r.DatasetSha256.Length > 0 && r.DatasetSha256 != data.Sha256)
            return $"its --data is another dataset (sha256 {Short(r.DatasetSha256)}) than the job's {data.Name} ({data.Sha256[..12]}); " +
                   "give it the job's data, or no --data to have samples shipped";
        if (Ships(r) && (long)globalBatch * data.Train.SampleSize > ProtocolConfig.MaxPayloadBytes)
            return $"it has no copy of dataset {data.Name} ({data.Sha256[..12]}) and a global batch of {globalBatch} samples is too large to ship; start it with --data";
        return null;
    }

    /// A worker without the job's dataset gets its samples shipped with every step.
    public bool Ships(RegisterWorker r) => r.DatasetSha256 != data.Sha256;

    /// "host:port" of the worker's gradient data plane, or "" when it has none (or no host is known).
    public static string DataEndpoint(RegisterWorker r, string? senderHost) =>
        r.DataPort is > 0 and <= 65535 && senderHost is not null ? $"{senderHost}:{r.DataPort}" : "";

    /// Closes the membership-before-token gap: honest workers join the cluster only after their token
    /// is accepted, but Akka.Cluster lets any node that reaches the seed join. A member still in the
    /// cluster at `address` with no admitted worker there is a stranger, to be downed.
    public static bool IsStranger(Address address, IEnumerable<Address> admitted, IEnumerable<(Address Address, MemberStatus Status)> members) =>
        !admitted.Contains(address) &&
        members.Any(m => m.Address.Equals(address) && m.Status is not (MemberStatus.Down or MemberStatus.Removed or MemberStatus.Exiting));

    static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;

    /// Constant-time comparison so the token cannot be guessed byte by byte from response times.
    static bool TokenEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));
}
