using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Tests.Layers;

public class LayerGradientTests
{
    [Theory]
    [InlineData(1, 5, 5, 2, 3, 1, 0, 2)]
    [InlineData(2, 7, 6, 3, 3, 2, 1, 2)]   // stride 2, padding 1, non-square
    [InlineData(3, 4, 6, 2, 5, 1, 2, 2)]   // padding 2, kernel larger than the input height
    [InlineData(4, 3, 5, 5, 1, 1, 0, 3)]   // 1x1, several in and out channels
    [InlineData(2, 8, 5, 2, 4, 2, 2, 1)]   // even kernel, stride 2, padding 2
    public void Conv2D(int inC, int h, int w, int filters, int kernel, int stride, int padding, int batch) =>
        GradientCheck.Run(new LayerSpec { Type = "conv2d", Filters = filters, Kernel = kernel, Stride = stride, Padding = padding },
                          new SampleShape(inC, h, w), batch, seed: (ulong)(inC * 100 + h));

    [Theory]
    [InlineData(4, 1, 1, 3)]
    [InlineData(2, 3, 5, 7)]   // dense flattens a C x H x W input
    public void Dense(int c, int h, int w, int units) =>
        GradientCheck.Run(new LayerSpec { Type = "dense", Units = units }, new SampleShape(c, h, w), 3, seed: 11);

    // Ties are excluded by construction: inputs are a shuffled set of distinct values 0.05 apart,
    // more than 2 * eps, so a finite-difference probe never changes which element is the maximum.
    [Theory]
    [InlineData(2, 6, 6, 2, null)]
    [InlineData(1, 7, 5, 3, 2)]   // overlapping windows
    public void MaxPool2D(int c, int h, int w, int size, int? stride)
    {
        int n = 2, count = n * c * h * w, next = 0;
        var values = Enumerable.Range(0, count).Select(i => (float)(i * 0.05 - count * 0.025)).ToArray();
        var rng = new DeterministicRandom(5);
        for (int i = count - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (values[i], values[j]) = (values[j], values[i]); }
        GradientCheck.Run(new LayerSpec { Type = "maxpool2d", Size = size, Stride = stride }, new SampleShape(c, h, w), n, 3,
                          _ => values[next++]);
    }

    [Theory]
    [InlineData(2, 6, 6, 2, null)]
    [InlineData(1, 7, 5, 3, 2)]
    public void AvgPool2D(int c, int h, int w, int size, int? stride) =>
        GradientCheck.Run(new LayerSpec { Type = "avgpool2d", Size = size, Stride = stride }, new SampleShape(c, h, w), 2, 4);

    // ReLU's kink at 0 is kept away from the probe: |x| >= 0.1 > eps.
    [Fact]
    public void ReLU() => GradientCheck.Run(new LayerSpec { Type = "relu" }, new SampleShape(2, 3, 4), 2, 6,
        rng => { float v = rng.NextFloat() * 0.9f + 0.1f; return rng.NextFloat() < 0.5f ? -v : v; });

    [Fact]
    public void Sigmoid() => GradientCheck.Run(new LayerSpec { Type = "sigmoid" }, new SampleShape(2, 3, 4), 2, 7);

    [Fact]
    public void Tanh() => GradientCheck.Run(new LayerSpec { Type = "tanh" }, new SampleShape(2, 3, 4), 2, 8);

    [Fact]
    public void Flatten() => GradientCheck.Run(new LayerSpec { Type = "flatten" }, new SampleShape(2, 3, 4), 2, 9);

    [Fact]
    public void Dropout_in_training_mode_with_its_fixed_mask() =>
        GradientCheck.Run(new LayerSpec { Type = "dropout", Rate = 0.4 }, new SampleShape(3, 4, 4), 2, 10);
}
