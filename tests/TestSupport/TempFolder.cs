namespace DistTrain.TestSupport;

/// A fresh folder under the system's temporary directory, deleted with everything in it on Dispose.
public sealed class TempFolder(string prefix) : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory($"disttrain-{prefix}-").FullName;

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
