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
        var e = Assert.Throws<DataFormatException>(() => new Dataset("mnist/train", 1, 1, 10, [1, 2], [3, 12], 0.5f, 0.2f));
        Assert.Contains("mnist/train: label 12 of sample 1 is out of range, expected 0..9", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        e = Assert.Throws<DataFormatException>(() => new Dataset("mnist/test", 2, 2, 10, [1, 2, 3], [1], 0.5f, 0.2f));
        Assert.Contains("mnist/test: 3 pixels do not make 1 images of 1x2x2", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Gather_does_not_allocate()
    {
        var d = Dataset.Synthetic("t", 64, seed: 1);
        var dst = new float[8 * d.SampleSize];
        var labels = new int[8];
        int[] indices = [5, 1, 63, 0, 7, 7, 30, 2];
        d.Gather(indices, dst, labels);   // warm-up, so JIT work is not counted
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) d.Gather(indices, dst, labels);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
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
        Assert.NotEqual(a.Train.Pixels.ToArray(), c.Train.Pixels.ToArray());
        Assert.Equal(Dataset.Synthetic("x", 30, 9).Pixels.ToArray(), Dataset.Synthetic("x", 30, 9).Pixels.ToArray());
        var same = DatasetFolder.Synthetic(50, 50, seed: 4);
        Assert.NotEqual(same.Train.Pixels.ToArray(), same.Test.Pixels.ToArray());
    }
}

public class SyntheticLearnabilityTests
{
    /// A CNN-free stand-in for "learnable": class centroids of 300 training samples must already
    /// classify held-out samples well, so a small CNN has a clear signal to find.
    [Fact]
    public void Nearest_centroid_of_a_few_hundred_samples_classifies_the_test_split()
    {
        var data = DatasetFolder.Synthetic(300, 200, seed: 7);
        int size = data.Train.SampleSize, classes = data.Train.Classes;
        var centroids = new double[classes * size];
        var counts = new int[classes];
        var sample = new float[size];
        var label = new int[1];
        for (int s = 0; s < data.Train.Count; s++)
        {
            data.Train.Gather([s], sample, label);
            counts[label[0]]++;
            for (int i = 0; i < size; i++) centroids[label[0] * size + i] += sample[i];
        }
        for (int c = 0; c < classes; c++)
            for (int i = 0; i < size; i++) centroids[c * size + i] /= counts[c];

        int correct = 0;
        for (int s = 0; s < data.Test.Count; s++)
        {
            data.Test.Gather([s], sample, label);
            int best = -1; double bestDistance = double.MaxValue;
            for (int c = 0; c < classes; c++)
            {
                double distance = 0;
                for (int i = 0; i < size; i++) { double d = sample[i] - centroids[c * size + i]; distance += d * d; }
                if (distance < bestDistance) (best, bestDistance) = (c, distance);
            }
            if (best == label[0]) correct++;
        }
        Assert.True(correct > 0.9 * data.Test.Count, $"nearest centroid got {correct}/{data.Test.Count}");
    }
}

public class DatasetNormalisationTests
{
    [Fact]
    public void Both_splits_are_normalised_with_the_training_statistics()
    {
        var synthetic = DatasetFolder.Synthetic(300, 100, seed: 3);
        Assert.Equal(synthetic.Train.Mean, synthetic.Test.Mean);
        Assert.Equal(synthetic.Train.Std, synthetic.Test.Std);
    }
}
