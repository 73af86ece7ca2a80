namespace DistTrain.Protocol;

/// How the workers sum their gradients: peer to peer around a ring, or through the coordinator (star).
public enum AllReduceAlgorithm { Ring, Star }

/// The algorithm's name as the command line (--allreduce) and the logs spell it.
public static class AllReduceAlgorithms
{
    public static readonly IReadOnlyList<string> Names = ["ring", "star"];

    public static string Name(this AllReduceAlgorithm algorithm) => algorithm switch
    {
        AllReduceAlgorithm.Ring => "ring",
        AllReduceAlgorithm.Star => "star",
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "unknown all-reduce algorithm"),
    };

    public static AllReduceAlgorithm Parse(string name, string input = "--allreduce") => name switch
    {
        "ring" => AllReduceAlgorithm.Ring,
        "star" => AllReduceAlgorithm.Star,
        _ => throw new FormatException($"{input}: expected {string.Join(" or ", Names)}, got '{name}'"),
    };
}
