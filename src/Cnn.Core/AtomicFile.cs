namespace DistTrain.Cnn;

/// Writes a file so that readers see the old one or the whole new one, never a part: the bytes go
/// to PATH.tmp-RANDOM in the same folder, are flushed to disk, and that file is renamed over PATH.
/// On any failure the temporary file is removed and an existing PATH is left as it was.
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string tmp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(file);
                file.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }
}
