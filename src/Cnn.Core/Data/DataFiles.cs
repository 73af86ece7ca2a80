namespace DistTrain.Cnn.Data;

/// Reading a dataset's files, every failure one line naming the file.
static class DataFiles
{
    public static byte[] ReadAll(string path) => Read(path, File.ReadAllBytes);

    /// The first `count` bytes of the file (fewer when it is shorter): enough to tell a format by.
    public static byte[] ReadHead(string path, int count) => Read(path, p =>
    {
        using var file = File.OpenRead(p);
        var head = new byte[count];
        return head[..file.ReadAtLeast(head, count, throwOnEndOfStream: false)];
    });

    static T Read<T>(string path, Func<string, T> read)
    {
        try { return read(path); }
        catch (FileNotFoundException) { throw new DataFormatException($"{path}: file not found"); }
        catch (DirectoryNotFoundException) { throw new DataFormatException($"{path}: file not found"); }
        catch (UnauthorizedAccessException) { throw new DataFormatException($"{path}: permission denied"); }
        catch (IOException e) { throw new DataFormatException($"{path}: cannot read: {e.Message.ReplaceLineEndings(" ")}"); }
    }
}
