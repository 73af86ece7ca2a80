using DistTrain.Cnn.Data;

namespace DistTrain.Cnn.Tests.Data;

public class DatasetTests
{
    [Fact]
    public void Gather_normalises_and_orders_samples_and_labels()
    {
        // Two 1x2 images: [0, 255] and [51, 102]; mean 0.5, std 0.25.
        var d = new Dataset("t", 1, 2, 10, [0, 255, 51, 102], [7, 3], mean: 0.5f, std: 0.25f);
        var dst = new float[4];
        var labels = new int[2];
        d.Gather([1, 0], dst, labels);
        // (51/255 - 0.5)/0.25 = -1.2, (102/255 - 0.5)/0.25 = -0.4, (0 - 0.5)/0.25 = -2, (1 - 0.5)/0.25 = 2
        float[] expected = [-1.2f, -0.4f, -2f, 2f];
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], dst[i], 1e-6f);
        Assert.Equal([3, 7], labels);
    }

    [Fact]
    public void Labels_out_of_range_and_size_mismatch_are_rejected()
    {
        var e = Assert.Throws<DataFormatException>(() => new Dataset("t", 1, 1, 10, [1, 2], [3, 12], 0.5f, 0.2f));
        Assert.Contains("label 12 of sample 1 is out of range, expected 0..9", e.Message);
        e = Assert.Throws<DataFormatException>(() => new Dataset("t", 2, 2, 10, [1, 2, 3], [1], 0.5f, 0.2f));
        Assert.Contains("3 pixels do not make 1 images of 2x2", e.Message);
    }

    [Fact]
    public void Statistics_in_double_precision()
    {
        var (mean, std) = Dataset.Statistics([0, 255, 0, 255]);
        Assert.Equal(0.5f, mean, 1e-7f);
        Assert.Equal(0.5f, std, 1e-7f);
    }

    [Fact]
    public void Synthetic_is_deterministic_balanced_and_splits_differ()
    {
        var a = DatasetFolder.Synthetic(200, 50, seed: 4);
        var b = DatasetFolder.Synthetic(200, 50, seed: 4);
        var c = DatasetFolder.Synthetic(200, 50, seed: 5);
        Assert.Equal(a.Train.Pixels.ToArray(), b.Train.Pixels.ToArray());
        Assert.Equal(a.Sha256, b.Sha256);
        Assert.NotEqual(a.Sha256, c.Sha256);
        Assert.All(Enumerable.Range(0, 10), k => Assert.Equal(20, a.Train.Labels.ToArray().Count(l => l == k)));
        var same = DatasetFolder.Synthetic(50, 50, seed: 4);
        Assert.NotEqual(same.Train.Pixels.ToArray(), same.Test.Pixels.ToArray());
    }
}

public class DatasetNormalisationTests
{
    [Fact]
    public void Both_splits_are_normalised_with_the_training_statistics()
    {
        var synthetic = DatasetFolder.Synthetic(300, 100, seed: 3);
        Assert.Equal((synthetic.Train.Mean, synthetic.Train.Std), (synthetic.Test.Mean, synthetic.Test.Std));
    }
}
