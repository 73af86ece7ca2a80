using DistTrain.Cnn.Data;
using SkiaSharp;

namespace DistTrain.TestSupport;

/// Image-folder datasets (DIR/train/CLASS/NNNNN.png, DIR/test/...) written from a dataset's
/// samples as PNG files: lossless, so the folder loads back to the same bytes.
public static class ImageFolderWriter
{
    public static string Write(string dir, DatasetFolder data, IReadOnlyList<string> classNames)
    {
        foreach (var (split, set) in new[] { (ImageFolder.Train, data.Train), (ImageFolder.Test, data.Test) })
            for (int i = 0; i < set.Count; i++)
            {
                string folder = Path.Combine(dir, split, classNames[set.Label(i)]);
                Directory.CreateDirectory(folder);
                File.WriteAllBytes(Path.Combine(folder, $"{i:D5}.png"), Png(set, i));
            }
        return dir;
    }

    /// Sample i of `set` encoded as PNG: grayscale for one channel, RGB for three.
    public static byte[] Png(Dataset set, int i)
    {
        int w = set.Width, h = set.Height, plane = w * h;
        var sample = set.Pixels.Slice(i * set.SampleSize, set.SampleSize);
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, set.Channels == 1 ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Opaque));
        var pixels = bitmap.GetPixelSpan();
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (set.Channels == 1) pixels[y * bitmap.RowBytes + x] = sample[y * w + x];
                else
                {
                    int at = y * bitmap.RowBytes + 4 * x;
                    for (int c = 0; c < 3; c++) pixels[at + c] = sample[c * plane + y * w + x];
                    pixels[at + 3] = 255;
                }
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }
}
