using DistTrain.Cnn.Data;

namespace DistTrain.Cnn.Tests.Data;

/// Crop and flip drawn from (seed, epoch, sample index): their definition (torchvision's padded
/// crop, then a mirror), their spread, and independence from which row of which dataset holds the sample.
public class AugmentationTests
{
    [Theory]
    [InlineData("none", "none")]
    [InlineData("flip", "flip")]
    [InlineData("crop:4", "crop:4")]
    [InlineData("crop:4,flip", "crop:4,flip")]
    [InlineData(" flip , crop:2 ", "crop:2,flip")]
    public void The_spec_round_trips(string spec, string written) => Assert.Equal(written, Augmentation.Parse(spec).ToString());

    [Theory]
    [InlineData("crop")]
    [InlineData("crop:0")]
    [InlineData("crop:-1")]
    [InlineData("crop:x")]
    [InlineData("rotate")]
    [InlineData("flip,flip")]
    [InlineData("crop:4,crop:2")]
    [InlineData("")]
    public void A_bad_spec_is_one_line_naming_what_is_expected(string spec)
    {
        var e = Assert.Throws<ArgumentException>(() => Augmentation.Parse(spec));
        Assert.StartsWith($"--augment: '{spec}': expected none, flip, crop:P or crop:P,flip", e.Message);
    }

    [Fact]
    public void Shifts_and_flips_are_spread_evenly_and_depend_on_seed_epoch_and_sample_only()
    {
        var a = new Augmentation(3, true);
        int n = 21_000, changed = 0, flips = 0;
        var dys = new int[7];
        var dxs = new int[7];
        for (int id = 0; id < n; id++)
        {
            var d = a.Draw(5, 2, id);
            Assert.Equal(d, a.Draw(5, 2, id));
            dys[d.Dy + 3]++;
            dxs[d.Dx + 3]++;
            if (d.Flip) flips++;
            if (a.Draw(5, 3, id) != d) changed++;
        }
        // Each of the 7 shifts about 3,000 times (binomial sd about 50): 10% is far outside chance.
        Assert.All(dys.Concat(dxs), count => Assert.InRange(count, 2_700, 3_300));
        Assert.InRange(flips, 10_000, 11_000);
        Assert.True(changed > n * 0.9, $"{changed} of {n} samples look the same in the next epoch");
        Assert.Equal((0, 0, false), Augmentation.None.Draw(5, 2, 17));
    }

    static Dataset Colours(int count, ulong seed)
    {
        const int c = 3, h = 5, w = 7;
        var rng = new DeterministicRandom(seed);
        var pixels = new byte[count * c * h * w];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(1 + rng.NextInt(255));   // never 0, so padding shows
        return new Dataset("colours", c, h, w, 10, pixels, [.. Enumerable.Range(0, count).Select(i => (byte)(i % 10))],
                           [0.5f, 0.4f, 0.3f], [0.2f, 0.25f, 0.3f]);
    }

    [Fact]
    public void A_gathered_sample_is_the_padded_image_cropped_then_mirrored()
    {
        var data = Colours(40, 3);
        var a = new Augmentation(2, true);
        int[] ids = [.. Enumerable.Range(0, 40)];
        var dst = new float[40 * data.SampleSize];
        var labels = new int[40];
        data.Gather(ids, ids, 9, 1, a, dst, labels);
        int h = data.Height, w = data.Width, p = a.CropPadding;
        var seen = new HashSet<(int, int, bool)>();
        for (int s = 0; s < 40; s++)
        {
            var (dy, dx, flip) = a.Draw(9, 1, s);
            seen.Add((dy, dx, flip));
            for (int c = 0; c < 3; c++)
            {
                // torchvision: pad with 0 on every side, take the H x W window at (dy + P, dx + P), then mirror.
                var padded = new byte[h + 2 * p, w + 2 * p];
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) padded[y + p, x + p] = data.Pixels[s * data.SampleSize + c * h * w + y * w + x];
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                    {
                        byte v = padded[y + dy + p, (flip ? w - 1 - x : x) + dx + p];
                        float expected = (v / 255f - data.Mean[c]) / data.Std[c];
                        Assert.Equal(expected, dst[s * data.SampleSize + c * h * w + y * w + x]);
                    }
            }
            Assert.Equal(data.Label(s), labels[s]);
        }
        Assert.True(seen.Count > 10, "the 40 samples should show many different crops");
    }

    [Fact]
    public void A_shipped_batch_gathers_the_same_floats_as_the_full_dataset()
    {
        var data = Colours(30, 4);
        int[] ids = [21, 3, 17, 8];
        var shippedPixels = ids.SelectMany(i => data.Pixels.Slice(i * data.SampleSize, data.SampleSize).ToArray()).ToArray();
        var shipped = new Dataset("shipped", 3, data.Height, data.Width, 10, shippedPixels, [.. ids.Select(i => data.Label(i))], [.. data.Mean], [.. data.Std]);
        var a = new Augmentation(1, true);
        var own = new float[4 * data.SampleSize];
        var sent = new float[4 * data.SampleSize];
        data.Gather(ids, ids, 2, 0, a, own, new int[4]);
        shipped.Gather([0, 1, 2, 3], ids, 2, 0, a, sent, new int[4]);
        Assert.Equal(own, sent);
    }
}

public class RecipeAugmentationTests
{
    [Theory]
    [InlineData("resnet20", 3, 32, "crop:4,flip")]
    [InlineData("resnet20", 3, 64, "crop:8,flip")]
    [InlineData("resnet20", 1, 28, "none")]     // digits: no flip
    [InlineData("lenet5", 3, 32, "none")]
    [InlineData("mnist-cnn", 3, 32, "none")]
    public void ResNet20_on_colour_images_takes_the_papers_crop_and_flip(string preset, int channels, int height, string expected) =>
        Assert.Equal(expected, DistTrain.Cnn.Models.Presets.DefaultAugmentation(preset, channels, height).ToString());
}
