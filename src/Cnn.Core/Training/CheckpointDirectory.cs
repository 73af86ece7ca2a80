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

    /// Files already checked, by name, size and time written: whether they load.
    readonly Dictionary<string, (long Length, DateTime Written, bool Valid)> _checked = new(StringComparer.Ordinal);

    /// Writes the checkpoint of `step`, then keeps the newest `keep` checkpoints that load and
    /// deletes those older than them. A corrupt file is never counted among the kept, so it cannot
    /// push a valid one out; one newer than the kept stays for a person to look at.
    public void Save(Action<string> write, long step)
    {
        Directory.CreateDirectory(Path);
        write(FileFor(step));
        int valid = 0;
        foreach (var file in NewestFirst())
        {
            if (valid >= keep) File.Delete(file);
            else if (Loads(file)) valid++;
        }
    }

    bool Loads(string file)
    {
        var info = new FileInfo(file);
        if (_checked.TryGetValue(file, out var seen) && seen.Length == info.Length && seen.Written == info.LastWriteTimeUtc) return seen.Valid;
        bool valid;
        try { TrainingCheckpoint.Load(file); valid = true; }
        catch (CheckpointFormatException) { valid = false; }
        _checked[file] = (info.Length, info.LastWriteTimeUtc, valid);
        return valid;
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
