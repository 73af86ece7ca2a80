using System.Security.Cryptography;
using DistTrain.Cnn.Data;
using DistTrain.TestSupport;
using SkiaSharp;

namespace DistTrain.Cnn.Tests.Data;

/// Image folders (one sub-folder per class, PNG or JPEG), written here with SkiaSharp: they load to
/// the pixels written, in label order of the sorted class names; every odd file is one line naming it.
public sealed class ImageFolderTests : IDisposable
{
    readonly TempFolder _dir = new("images");
    public void Dispose() => _dir.Dispose();
    static readonly string[] Names = ["airplane", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck", "zebra"];

    static void AssertOneLine(DataFormatException e, params string[] fragments)
    {
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    static int[] ClassOrder(Dataset d) =>
        // The writer puts sample i in its class's folder as i.png; the loader reads classes in name order, then files in name order.
        [.. Enumerable.Range(0, d.Count).OrderBy(i => d.Label(i)).ThenBy(i => i)];

    [Theory]
    [InlineData(3)]
    [InlineData(1)]
    public void A_folder_of_PNGs_loads_the_pixels_labels_and_class_names_it_was_written_from(int channels)
    {
        var source = DatasetFolder.Synthetic(60, 20, seed: 3, height: 12, width: 10, channels: channels);
        string dir = ImageFolderWriter.Write(_dir["f"], source, Names);
        var loaded = DatasetFolder.Load(dir);

        Assert.Equal((channels, 12, 10, 10), (loaded.Train.Channels, loaded.Train.Height, loaded.Train.Width, loaded.Train.Classes));
        Assert.Equal(Names, loaded.ClassNames);
        foreach (var (from, to) in new[] { (source.Train, loaded.Train), (source.Test, loaded.Test) })
        {
            var order = ClassOrder(from);
            Assert.Equal(order.Length, to.Count);
            for (int k = 0; k < order.Length; k++)
            {
                Assert.Equal(from.Label(order[k]), to.Label(k));
                Assert.Equal(from.Pixels.Slice(order[k] * from.SampleSize, from.SampleSize).ToArray(), to.Pixels.Slice(k * to.SampleSize, to.SampleSize).ToArray());
            }
        }
        Assert.Equal(Dataset.Statistics(loaded.Train.Pixels.ToArray(), channels, 120).Mean, loaded.Train.Mean);

        // The identity covers names and bytes: renaming a file changes it.
        string before = loaded.Sha256;
        string file = Directory.GetFiles(Path.Combine(dir, "test", "cat")).Order(StringComparer.Ordinal).First();
        File.Move(file, Path.Combine(Path.GetDirectoryName(file)!, "renamed.png"));
        Assert.NotEqual(before, DatasetFolder.Load(dir).Sha256);
    }

    [Fact]
    public void JPEG_images_decode_too()
    {
        string dir = _dir["jpeg"];
        SKColor red = new(255, 40, 0), blue = new(0, 90, 255);   // every channel varies between the images
        foreach (var (split, cls, colour) in new[] { ("train", "red", red), ("train", "blue", blue), ("test", "blue", blue) })
        {
            Directory.CreateDirectory(Path.Combine(dir, split, cls));
            using var bitmap = new SKBitmap(16, 8);
            bitmap.Erase(colour);
            using var image = SKImage.FromBitmap(bitmap);
            using var jpeg = image.Encode(SKEncodedImageFormat.Jpeg, 95);
            File.WriteAllBytes(Path.Combine(dir, split, cls, "a.JPG"), jpeg.ToArray());
        }
        var loaded = DatasetFolder.Load(dir);
        Assert.Equal(["blue", "red"], loaded.ClassNames);
        Assert.Equal((3, 8, 16), (loaded.Train.Channels, loaded.Train.Height, loaded.Train.Width));
        var first = loaded.Train.Pixels.Slice(0, loaded.Train.SampleSize);   // label 0: blue
        Assert.InRange(first[0], 0, 8);            // red plane (JPEG is lossy, so near)
        Assert.InRange(first[128], 82, 98);        // green plane
        Assert.InRange(first[2 * 128], 247, 255);  // blue plane
    }

    [Fact]
    public void Odd_files_and_folders_are_one_line_naming_them()
    {
        var source = DatasetFolder.Synthetic(20, 10, seed: 2, height: 8, width: 8, channels: 3);
        string Fresh(string name) => ImageFolderWriter.Write(_dir[name], source, Names);

        string dir = Fresh("size");
        var odd = DatasetFolder.Synthetic(1, 1, seed: 1, height: 9, width: 8, channels: 3);
        string oddPath = Path.Combine(dir, "test", "dog", "odd.png");
        File.WriteAllBytes(oddPath, ImageFolderWriter.Png(odd.Train, 0));
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), oddPath, "8x9 pixels, expected 8x8", "resize");

        dir = Fresh("text");
        File.WriteAllText(Path.Combine(dir, "train", "cat", "notes.txt"), "hello");
        File.WriteAllText(Path.Combine(dir, "train", "cat", ".DS_Store"), "skipped");
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), "notes.txt: not a .png, .jpg or .jpeg file");

        dir = Fresh("broken");
        string broken = Path.Combine(dir, "train", "bird", "broken.png");
        File.WriteAllBytes(broken, [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), broken, "not a PNG or JPEG image");

        dir = Fresh("stranger");
        Directory.CreateDirectory(Path.Combine(dir, "test", "unicorn"));
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), "class 'unicorn' is not among the training classes");

        dir = Fresh("empty-class");
        Directory.CreateDirectory(Path.Combine(dir, "train", "aardvark"));
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), "aardvark: no images; every training class needs at least one");

        dir = Fresh("no-test");
        Directory.Delete(Path.Combine(dir, "test"), recursive: true);
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), "test: folder not found");
    }
}
