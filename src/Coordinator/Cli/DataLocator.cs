using System.Diagnostics;
using DistTrain.Cnn.Data;

namespace DistTrain.Coordinator.Cli;

/// Finds the dataset folder: --data DIR as given, or by default data/mnist (fetched with the
/// repository's deploy/fetch-mnist.sh the first time).
public static class DataLocator
{
    public const string DefaultFolder = "data/mnist";

    public static DatasetFolder Load(string? dataOption, TextWriter log) => Load(dataOption, log, out _);

    /// Also says which folder was used, so worker processes on this machine can read the same files.
    public static DatasetFolder Load(string? dataOption, TextWriter log, out string? folder)
    {
        if (dataOption is not null)
        {
            folder = Path.GetFullPath(dataOption);
            return DatasetFolder.Load(dataOption);
        }
        folder = Path.GetFullPath(DefaultFolder);
        if (Directory.Exists(DefaultFolder)) return DatasetFolder.Load(DefaultFolder);

        var root = FindRepositoryRoot() ?? throw new UsageException(
            $"{DefaultFolder}: dataset folder not found and no deploy/fetch-mnist.sh to fetch it; pass --data DIR");
        var target = Path.Combine(root, DefaultFolder);
        folder = target;
        if (!File.Exists(Path.Combine(target, "t10k-labels-idx1-ubyte")))
        {
            log.WriteLine($"fetching MNIST into {target} (deploy/fetch-mnist.sh) ...");
            Fetch(Path.Combine(root, "deploy", "fetch-mnist.sh"), target);
        }
        return DatasetFolder.Load(target);
    }

    /// The nearest folder above the working directory or the executable that holds DistTrain.sln.
    public static string? FindRepositoryRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "DistTrain.sln")) && File.Exists(Path.Combine(dir.FullName, "deploy", "fetch-mnist.sh")))
                    return dir.FullName;
        }
        return null;
    }

    static void Fetch(string script, string target)
    {
        var psi = new ProcessStartInfo("bash") { UseShellExecute = false };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(target);
        using var p = Process.Start(psi) ?? throw new UsageException($"{script}: could not start bash");
        p.WaitForExit();
        if (p.ExitCode != 0) throw new UsageException($"{script}: fetching MNIST failed (exit {p.ExitCode}); see the lines above");
    }
}
