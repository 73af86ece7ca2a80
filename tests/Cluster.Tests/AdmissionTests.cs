using Akka.Actor;
using Akka.Cluster;
using DistTrain.Cnn.Data;
using DistTrain.Coordinator.Cluster;
using DistTrain.Protocol;

namespace DistTrain.Cluster.Tests;

/// Admission as a plain class: no actor system.
public sealed class AdmissionTests
{
    static readonly DatasetFolder Data = DatasetFolder.Synthetic(trainCount: 64, testCount: 16, seed: 3);
    static readonly Admission Gate = new("the-token", Data, globalBatch: 64);

    static RegisterWorker Register(string token = "the-token", string? sha = null, int version = -1, int dataPort = 0) =>
        new(version < 0 ? ProtocolVersion.Current : version, token, sha ?? Data.Sha256, 1, "w", dataPort);

    [Fact]
    public void A_worker_with_the_version_the_token_and_the_jobs_dataset_is_accepted_and_reads_its_own_data()
    {
        Assert.Null(Gate.Refusal(Register(), known: false));
        Assert.False(Gate.Ships(Register()));
    }

    [Fact]
    public void A_wrong_token_or_protocol_version_is_refused_even_for_a_known_worker()
    {
        Assert.Equal("wrong job token", Gate.Refusal(Register(token: "the-tokeN"), known: true));
        Assert.Equal("wrong job token", Gate.Refusal(Register(token: "the-token-and-more"), known: false));
        Assert.Equal("wrong job token", Gate.Refusal(Register(token: ""), known: false));
        Assert.Equal($"protocol version {ProtocolVersion.Current + 1}, the coordinator speaks {ProtocolVersion.Current}",
                     Gate.Refusal(Register(version: ProtocolVersion.Current + 1), known: true));
    }

    [Fact]
    public void Another_dataset_is_refused_naming_both_and_no_dataset_gets_the_samples_shipped()
    {
        string other = new('a', 64);
        Assert.Equal($"its --data is another dataset (sha256 aaaaaaaaaaaa) than the job's {Data.Name} ({Data.Sha256[..12]}); " +
                     "give it the job's data, or no --data to have samples shipped", Gate.Refusal(Register(sha: other), known: false));
        Assert.Null(Gate.Refusal(Register(sha: other), known: true));   // a repeated registration is not judged again
        Assert.Null(Gate.Refusal(Register(sha: ""), known: false));
        Assert.True(Gate.Ships(Register(sha: "")));
    }

    [Fact]
    public void A_worker_without_the_data_is_refused_when_a_global_batch_is_too_large_to_ship()
    {
        int tooMany = ProtocolConfig.MaxPayloadBytes / Data.Train.SampleSize + 1;
        var gate = new Admission("the-token", Data, tooMany);
        Assert.Contains($"a global batch of {tooMany} samples is too large to ship; start it with --data", gate.Refusal(Register(sha: ""), known: false));
        Assert.Null(gate.Refusal(Register(), known: false));   // one with the data reads it locally
        Assert.Null(new Admission("the-token", Data, tooMany - 1).Refusal(Register(sha: ""), known: false));
    }

    [Theory]
    [InlineData(7000, "10.0.0.2", "10.0.0.2:7000")]
    [InlineData(0, "10.0.0.2", "")]
    [InlineData(65536, "10.0.0.2", "")]
    [InlineData(7000, null, "")]
    public void The_data_endpoint_is_the_senders_host_and_a_valid_data_port(int port, string? host, string expected) =>
        Assert.Equal(expected, Admission.DataEndpoint(Register(dataPort: port), host));

    [Fact]
    public void A_stranger_is_a_member_still_in_the_cluster_with_no_admitted_worker_at_its_address()
    {
        var admitted = new Address("akka.tcp", "disttrain", "127.0.0.1", 5001);
        var other = new Address("akka.tcp", "disttrain", "127.0.0.1", 5002);
        (Address, MemberStatus)[] members = [(admitted, MemberStatus.Up), (other, MemberStatus.Up)];
        Assert.True(Admission.IsStranger(other, [admitted], members));
        Assert.False(Admission.IsStranger(admitted, [admitted], members));
        Assert.False(Admission.IsStranger(other, [admitted], [(admitted, MemberStatus.Up)]));      // already gone
        Assert.False(Admission.IsStranger(other, [admitted], [(other, MemberStatus.Down)]));      // already downed
        Assert.False(Admission.IsStranger(other, [admitted], [(other, MemberStatus.Exiting)]));
    }
}
