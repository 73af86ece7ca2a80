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
    public static string IdxFolder(string dir, int train, int test, ulong seed) =>
        TestSupport.IdxFolder.Random(Path.Combine(dir, "data"), train, test, seed);
}
