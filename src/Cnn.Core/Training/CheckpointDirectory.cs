using System.Globalization;
using DistTrain.Cnn.Checkpoints;

namespace DistTrain.Cnn.Training;

/// A folder of checkpoints named step-NNNNNNNN.safetensors; keeps the newest few.
public sealed class CheckpointDirectory(string path, int keep = 3)
{
    public string Path { get; } = path;

    public string FileFor(long step) => System.IO.Path.Combine(Path, $"step-{step.ToString("D8", CultureInfo.InvariantCulture)}.safetensors");

    public IEnumerable<string> NewestFirst() =>
        Directory.Exists(Path)
            ? Directory.GetFiles(Path, "step-*.safetensors").OrderByDescending(f => f, StringComparer.Ordinal)
            : [];

    public void Save(Action<string> write, long step)
    {
        Directory.CreateDirectory(Path);
        write(FileFor(step));
        foreach (var old in NewestFirst().Skip(keep)) File.Delete(old);
    }

    /// The newest checkpoint that loads; corrupt ones are reported through `warn` and skipped.
    public TrainingCheckpoint? LoadNewestValid(Action<string> warn)
    {
        foreach (var file in NewestFirst())
        {
            try { return TrainingCheckpoint.Load(file); }
            catch (CheckpointFormatException e) { warn($"skipping checkpoint: {e.Message}"); }
        }
        return null;
    }
}
