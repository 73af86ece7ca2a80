namespace DistTrain.Coordinator.Cli;

/// The exit codes of DESIGN.md's command-line contract.
public static class ExitCodes
{
    public const int Done = 0;
    public const int BadInput = 2;
    public const int Diverged = 3;
    public const int ClusterFailed = 4;
}

/// A user's mistake (bad option, bad file): printed as one line, exit 2, never a stack trace.
public sealed class UsageException(string message) : Exception(message);
