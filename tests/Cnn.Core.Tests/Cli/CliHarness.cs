using DistTrain.Cnn.Data;

namespace DistTrain.Cnn.Tests.Cli;

/// What the CLI tests share: running the command line in-process, and small IDX dataset folders.
static class CliHarness
{
    /// `disttrain ARGS` through Program.Run: its exit code, stdout and stderr.
    public static (int exit, string stdout, string stderr) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = DistTrain.Coordinator.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// dir/data with the four IDX files: random pixels, labels cycling through 0..9.
    public static string IdxFolder(string dir, int train, int test, ulong seed)
    {
        var data = Path.Combine(dir, "data");
        Directory.CreateDirectory(data);
        var rng = new DeterministicRandom(seed);
        void Split(string prefix, int n)
        {
            var pixels = new byte[n * 28 * 28];
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)rng.NextInt(256);
            IdxFile.WriteImages(Path.Combine(data, $"{prefix}-images-idx3-ubyte"), n, 28, 28, pixels);
            IdxFile.WriteLabels(Path.Combine(data, $"{prefix}-labels-idx1-ubyte"), Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
        }
        Split("train", train);
        Split("t10k", test);
        return data;
    }
}
