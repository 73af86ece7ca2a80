namespace DistTrain.TestSupport;

public static class Repository
{
    /// The folder holding DistTrain.sln, above the test's binaries.
    public static string Root { get; } = FindRoot();

    /// data/mnist when it was fetched (tests/run.sh fetches it), else null.
    public static string? Mnist => Directory.Exists(Path.Combine(Root, "data", "mnist")) ? Path.Combine(Root, "data", "mnist") : null;

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "DistTrain.sln"))) return d.FullName;
        throw new InvalidOperationException("DistTrain.sln not found above " + AppContext.BaseDirectory);
    }
}
