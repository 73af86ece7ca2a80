using DistTrain.Worker;

namespace DistTrain.Coordinator.Cli;

/// The shared secret a worker presents to join: from --token-file FILE, else the
/// DISTTRAIN_JOB_TOKEN environment variable. It is never printed, logged or put on a command line.
public static class JobToken
{
    /// The token, or null when neither a file nor the variable gives one.
    public static string? Read(string? file)
    {
        if (file is not null)
        {
            if (!File.Exists(file)) throw new UsageException($"--token-file {file}: not found, expected a file holding the job token");
            string text;
            try { text = File.ReadAllText(file).Trim(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--token-file {file}: cannot read it ({e.GetType().Name.Replace("Exception", "")})");
            }
            if (text.Length == 0) throw new UsageException($"--token-file {file}: the file is empty, expected the job token");
            if (text.Any(char.IsControl)) throw new UsageException($"--token-file {file}: expected one line holding the job token");
            return text;
        }
        return Environment.GetEnvironmentVariable(WorkerHost.TokenVariable) is { Length: > 0 } t ? t : null;
    }
}
