using DistTrain.Cnn;
using DistTrain.Cnn.Data;

namespace DistTrain.TestSupport;

/// Dataset folders in MNIST's IDX format, so the command line and worker processes read them as
/// they read MNIST.
public static class IdxFolder
{
    /// dir with the four IDX files of `data` (28x28 samples).
    public static string Write(string dir, DatasetFolder data)
    {
        Directory.CreateDirectory(dir);
        WriteSplit(dir, "train", data.Train.Count, data.Train.Pixels, data.Train.Labels);
        WriteSplit(dir, "t10k", data.Test.Count, data.Test.Pixels, data.Test.Labels);
        return dir;
    }

    /// dir with the four IDX files: random pixels, labels cycling through 0..9.
    public static string Random(string dir, int train, int test, ulong seed)
    {
        Directory.CreateDirectory(dir);
        var rng = new DeterministicRandom(seed);
        foreach (var (prefix, n) in new[] { ("train", train), ("t10k", test) })
        {
            var pixels = new byte[n * 28 * 28];
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)rng.NextInt(256);
            WriteSplit(dir, prefix, n, pixels, Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
        }
        return dir;
    }

    static void WriteSplit(string dir, string prefix, int count, ReadOnlySpan<byte> pixels, ReadOnlySpan<byte> labels)
    {
        IdxFile.WriteImages(Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), count, 28, 28, pixels);
        IdxFile.WriteLabels(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), labels);
    }
}
