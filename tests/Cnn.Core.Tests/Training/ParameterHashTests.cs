using DistTrain.Cnn.Training;

namespace DistTrain.Cnn.Tests.Training;

public class ParameterHashTests
{
    [Fact]
    public void Both_hashes_name_the_exact_bits_of_a_parameter_vector()
    {
        var a = Enumerable.Range(0, 1001).Select(i => i * 0.001f - 0.5f).ToArray();
        var b = (float[])a.Clone();
        Assert.Equal(ParameterHash.ReplicaHex(a), ParameterHash.ReplicaHex(b));
        Assert.Equal(ParameterHash.Sha256Hex(a), ParameterHash.Sha256Hex(b));
        Assert.Matches("^[0-9a-f]{32}$", ParameterHash.ReplicaHex(a));   // XxHash128
        Assert.Matches("^[0-9a-f]{64}$", ParameterHash.Sha256Hex(a));

        // One bit of one element, and a sign of zero, change both.
        b[777] = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(b[777]) ^ 1);
        Assert.NotEqual(ParameterHash.ReplicaHex(a), ParameterHash.ReplicaHex(b));
        Assert.NotEqual(ParameterHash.Sha256Hex(a), ParameterHash.Sha256Hex(b));
        float[] zero = [0f], negativeZero = [-0f];
        Assert.NotEqual(ParameterHash.ReplicaHex(zero), ParameterHash.ReplicaHex(negativeZero));
    }
}
