namespace DistTrain.Coordinator;

/// Checks, before any data is loaded or any process started, that the run's outputs can be
/// written: a report or a checkpoint folder that cannot be written would otherwise be found out
/// only after the training it was meant to keep.
static class OutputPaths
{
    /// A file the run writes (--report, --metrics): its folder is created if missing and must take a
    /// file. `replaced`: written to a temporary file in that folder and renamed over the path
    /// (AtomicFile), so only the folder matters; otherwise (appended to) an existing file must open
    /// for writing.
    public static void File(string option, string path, bool replaced)
    {
        if (Directory.Exists(path)) throw new BadInputException($"{option} {path}: is a folder; expected a file name");
        if (!replaced && System.IO.File.Exists(path))
        {
            // Opened for writing without a change (a device such as /dev/full counts as writable here).
            try { using var _ = new FileStream(path, FileMode.Open, FileAccess.Write); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new BadInputException($"{option} {path}: cannot write it ({e.Message.ReplaceLineEndings(" ")})");
            }
            return;
        }
        Probe(option, path, Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// A folder the run writes into (--checkpoint-dir, --tensorboard): created if missing.
    public static void Folder(string option, string path) => Probe(option, path, Path.GetFullPath(path));

    static void Probe(string option, string given, string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
            string probe = Path.Combine(folder, $".disttrain-write-test-{Guid.NewGuid():N}");
            System.IO.File.WriteAllBytes(probe, [0]);
            System.IO.File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BadInputException($"{option} {given}: cannot write there ({e.Message.ReplaceLineEndings(" ")})");
        }
    }
}
