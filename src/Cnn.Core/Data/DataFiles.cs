namespace DistTrain.Cnn.Data;

/// Reading a dataset's files, every failure one line naming the file.
static class DataFiles
{
    public static byte[] ReadAll(string path)
    {
        try { return File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new DataFormatException($"{path}: file not found"); }
        catch (DirectoryNotFoundException) { throw new DataFormatException($"{path}: file not found"); }
        catch (UnauthorizedAccessException) { throw new DataFormatException($"{path}: permission denied"); }
        catch (IOException e) { throw new DataFormatException($"{path}: cannot read: {e.Message.ReplaceLineEndings(" ")}"); }
    }
}
