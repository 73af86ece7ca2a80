using System.Security.Cryptography;
using SkiaSharp;

namespace DistTrain.Cnn.Data;

/// A dataset of image files, one sub-folder per class: DIR/train/CLASS/*.png|*.jpg|*.jpeg and
/// DIR/test/CLASS/... (torchvision's ImageFolder layout, split in two). Classes are the training
/// split's sub-folders in ordinal order (label 0 is the first); the test split may lack a class
/// but not add one. Every image must have the size of the first training image (the message names
/// the odd one; resize them beforehand); the samples are 1 channel when every training image
/// decodes as grayscale, else 3 (RGB; alpha is dropped). Hidden files (".*") are skipped, any
/// other file that is not a PNG or JPEG image is refused. The identity is the SHA-256 of every
/// image's path (relative to DIR) and bytes, in order.
public static class ImageFolder
{
    public const string Train = "train", Test = "test";
    static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    /// Whether `dir` is laid out as an image folder (it has a train sub-folder).
    public static bool Holds(string dir) => Directory.Exists(Path.Combine(dir, Train));

    public static DatasetFolder Load(string dir)
    {
        string name = new DirectoryInfo(dir).Name;
        string trainDir = Path.Combine(dir, Train), testDir = Path.Combine(dir, Test);
        if (!Directory.Exists(testDir)) throw new DataFormatException($"{testDir}: folder not found; an image folder holds {Train}/CLASS/ and {Test}/CLASS/ sub-folders");
        var classes = Directory.GetDirectories(trainDir).Select(Path.GetFileName).OfType<string>().Where(c => !c.StartsWith('.')).Order(StringComparer.Ordinal).ToArray();
        if (classes.Length == 0) throw new DataFormatException($"{trainDir}: no class sub-folders; expected one folder of images per class");
        if (classes.Length > 256) throw new DataFormatException($"{trainDir}: {classes.Length} class folders; at most 256 classes are supported");
        foreach (var extra in Directory.GetDirectories(testDir).Select(Path.GetFileName).OfType<string>().Where(c => !c.StartsWith('.') && !classes.Contains(c)))
            throw new DataFormatException($"{Path.Combine(testDir, extra)}: class '{extra}' is not among the training classes ({string.Join(", ", classes)})");

        var trainFiles = Files(trainDir, classes, requireEach: true);
        var testFiles = Files(testDir, classes, requireEach: false);
        if (testFiles.Count == 0) throw new DataFormatException($"{testDir}: no images in its class folders");
        // The identity: every image's path relative to DIR and its bytes, hashed as they are read.
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var train = Decode(trainFiles, dir, sha);
        var test = Decode(testFiles, dir, sha);
        var first = train[0];
        bool gray = train.All(i => i.Gray);
        int channels = gray ? 1 : 3;
        foreach (var (split, images) in new[] { (train, trainFiles), (test, testFiles) })
            for (int i = 0; i < split.Count; i++)
                if (split[i].Width != first.Width || split[i].Height != first.Height)
                    throw new DataFormatException($"{images[i].Path}: {split[i].Width}x{split[i].Height} pixels, expected {first.Width}x{first.Height} like {trainFiles[0].Path}; resize the images to one size");

        byte[] Pixels(List<Decoded> images)
        {
            int plane = first.Width * first.Height;
            var pixels = new byte[(long)images.Count * channels * plane];
            for (int i = 0; i < images.Count; i++)
                for (int c = 0; c < channels; c++)
                    images[i].Planes[gray ? 0 : c].CopyTo(pixels.AsSpan((i * channels + c) * plane, plane));
            return pixels;
        }
        byte[] trainPixels = Pixels(train), testPixels = Pixels(test);
        var (mean, std) = Dataset.Statistics(trainPixels, channels, first.Width * first.Height);
        Dataset Split(string split, byte[] pixels, List<(string Path, byte Label)> files) =>
            new($"{name}/{split}", channels, first.Height, first.Width, classes.Length, pixels, [.. files.Select(f => f.Label)], mean, std);

        return new DatasetFolder(name, Split(Train, trainPixels, trainFiles), Split(Test, testPixels, testFiles), Convert.ToHexStringLower(sha.GetHashAndReset()))
        {
            ClassNames = classes,
        };
    }

    /// The images of every class folder in order, each with its class's label.
    static List<(string Path, byte Label)> Files(string splitDir, string[] classes, bool requireEach)
    {
        var files = new List<(string, byte)>();
        for (int label = 0; label < classes.Length; label++)
        {
            string classDir = Path.Combine(splitDir, classes[label]);
            if (!Directory.Exists(classDir)) continue;   // a test split may lack a class
            int before = files.Count;
            foreach (var path in Directory.GetFiles(classDir).Order(StringComparer.Ordinal))
            {
                string file = Path.GetFileName(path);
                if (file.StartsWith('.')) continue;
                if (!Extensions.Contains(Path.GetExtension(file).ToLowerInvariant()))
                    throw new DataFormatException($"{path}: not a .png, .jpg or .jpeg file; an image folder holds only images (hidden files are skipped)");
                files.Add((path, (byte)label));
            }
            if (requireEach && files.Count == before) throw new DataFormatException($"{classDir}: no images; every training class needs at least one");
        }
        return files;
    }

    /// A decoded image: one plane (gray) or three (red, green, blue), row-major.
    public sealed record Decoded(int Width, int Height, bool Gray, byte[][] Planes);

    /// Reads and decodes one PNG or JPEG file; a file that is not one is a DataFormatException naming it.
    public static Decoded DecodeFile(string path) => DecodeOne(path, DataFiles.ReadAll(path));

    static List<Decoded> Decode(List<(string Path, byte Label)> files, string dir, IncrementalHash sha)
    {
        var images = new List<Decoded>(files.Count);
        foreach (var (path, _) in files)
        {
            var bytes = DataFiles.ReadAll(path);
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(dir, path).Replace('\\', '/') + "\n"));
            sha.AppendData(bytes);
            images.Add(DecodeOne(path, bytes));
        }
        return images;
    }

    /// The image's planes: one (gray) or three (red, green, blue), row-major.
    static Decoded DecodeOne(string path, byte[] bytes)
    {
        SKBitmap? bitmap;
        try { bitmap = SKBitmap.Decode(bytes); }
        catch (ArgumentException) { bitmap = null; }   // SkiaSharp throws when no codec recognises the bytes
        using var decoded = bitmap ?? throw new DataFormatException($"{path}: not a PNG or JPEG image that can be decoded");
        int w = decoded.Width, h = decoded.Height, plane = w * h;
        if (decoded.ColorType == SKColorType.Gray8)
        {
            var gray = new byte[plane];
            var span = decoded.GetPixelSpan();
            for (int y = 0; y < h; y++) span.Slice(y * decoded.RowBytes, w).CopyTo(gray.AsSpan(y * w, w));
            return new Decoded(w, h, true, [gray]);
        }
        using var rgba = decoded.ColorType == SKColorType.Rgba8888 ? null : decoded.Copy(SKColorType.Rgba8888);
        var source = rgba ?? decoded;
        if (source.ColorType != SKColorType.Rgba8888) throw new DataFormatException($"{path}: its pixels could not be converted to RGB");
        var pixels = source.GetPixelSpan();
        var planes = new[] { new byte[plane], new byte[plane], new byte[plane] };
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int at = y * source.RowBytes + 4 * x;
                for (int c = 0; c < 3; c++) planes[c][y * w + x] = pixels[at + c];
            }
        return new Decoded(w, h, false, planes);
    }
}
