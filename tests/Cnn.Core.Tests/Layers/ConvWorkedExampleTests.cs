using DistTrain.Cnn.Kernels;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Tests.Layers;

/// The worked example: x = [[0.2, 0.8], [0.6, 0.1]], kernel [[0.5, -0.3], [0.2, 0.4]], bias 0.1.
public class ConvWorkedExampleTests
{
    static (Model model, Tensor input) Build()
    {
        var model = Model.Create(new ModelSpec
        {
            Name = "worked", Input = [1, 2, 2],
            Layers = [new() { Type = "conv2d", Filters = 1, Kernel = 2 }, new() { Type = "relu" }],
        });
        new float[] { 0.5f, -0.3f, 0.2f, 0.4f, 0.1f }.CopyTo(model.Parameters, 0);
        model.Layers[0].ComputeInputGradient = true;
        var x = new Tensor(new SampleShape(1, 2, 2), 1);
        new float[] { 0.2f, 0.8f, 0.6f, 0.1f }.CopyTo(x.Span);
        return (model, x);
    }

    [Fact]
    public void Forward_gives_0_12_before_and_after_relu()
    {
        var (model, x) = Build();
        var conv = model.Layers[0].Forward(x, BatchContext.Inference);
        // 0.2*0.5 + 0.8*(-0.3) + 0.6*0.2 + 0.1*0.4 + 0.1 = 0.1 - 0.24 + 0.12 + 0.04 + 0.1 = 0.12
        Assert.Equal(0.12f, conv.Span[0], 6);
        var y = model.Forward(x, BatchContext.Inference);
        Assert.Equal(0.12f, y.Span[0], 6);
    }

    [Fact]
    public void Gradients_of_half_squared_error_to_target_1_match_hand_derivation()
    {
        var (model, x) = Build();
        var y = model.Forward(x, BatchContext.Inference);
        // L = 0.5 (y - 1)^2, dL/dy = y - 1 = -0.88; ReLU passes it through since y > 0.
        var g = new Tensor(y.Shape, 1);
        g.Span[0] = y.Span[0] - 1f;
        model.ZeroGradients();
        model.Backward(g);
        // dL/dW = dL/dy * x, dL/db = dL/dy: one position, so the shared kernel gets one contribution each.
        float[] expectedW = [-0.88f * 0.2f, -0.88f * 0.8f, -0.88f * 0.6f, -0.88f * 0.1f];  // -0.176 -0.704 -0.528 -0.088
        for (int i = 0; i < 4; i++) Assert.Equal(expectedW[i], model.Gradients[i], 5);
        Assert.Equal(-0.88f, model.Gradients[4], 5);
        // dL/dx = dL/dy * W = [-0.44, 0.264, -0.176, -0.352]
        var conv = model.Layers[0];
        var relu = model.Layers[1];
        var gx = conv.Backward(relu.Backward(g)).Span;
        float[] expectedX = [-0.44f, 0.264f, -0.176f, -0.352f];
        for (int i = 0; i < 4; i++) Assert.Equal(expectedX[i], gx[i], 5);
    }

    [Fact]
    public void Backward_adds_into_gradients_so_micro_batches_accumulate()
    {
        var (model, x) = Build();
        var y = model.Forward(x, BatchContext.Inference);
        var g = new Tensor(y.Shape, 1);
        g.Span[0] = -0.88f;
        model.ZeroGradients();
        model.Backward(g);
        var once = (float[])model.Gradients.Clone();
        model.Forward(x, BatchContext.Inference);
        model.Backward(g);
        for (int i = 0; i < once.Length; i++) Assert.Equal(2 * once[i], model.Gradients[i], 6);
    }

    [Fact]
    public void Shared_kernel_gradient_sums_every_position()
    {
        // A 1x3x3 input of ones, a 2x2 kernel: 4 positions, each contributing x = 1 to every
        // kernel weight, so with dL/dy = 1 everywhere each weight's gradient is exactly 4.
        var model = Model.Create(new ModelSpec { Name = "share", Input = [1, 3, 3], Layers = [new() { Type = "conv2d", Filters = 1, Kernel = 2 }] });
        var x = new Tensor(new SampleShape(1, 3, 3), 1);
        x.Span.Fill(1f);
        var y = model.Forward(x, BatchContext.Inference);
        var g = new Tensor(y.Shape, 1);
        g.Span.Fill(1f);
        model.ZeroGradients();
        model.Backward(g);
        Assert.Equal(new[] { 4f, 4f, 4f, 4f, 4f }, model.Gradients);
    }
}

/// The fast convolution (im2col + GEMM) against a direct six-loop convolution in double precision.
public class ConvAgainstDirectLoopTests
{
    [Theory]
    [InlineData(1, 6, 6, 2, 3, 1, 0)]
    [InlineData(3, 7, 5, 4, 3, 2, 1)]
    [InlineData(2, 5, 8, 3, 5, 1, 2)]
    public void Forward_equals_direct_convolution(int inC, int h, int w, int outC, int k, int stride, int pad)
    {
        var model = Model.Create(new ModelSpec { Name = "c", Input = [inC, h, w], Layers = [new() { Type = "conv2d", Filters = outC, Kernel = k, Stride = stride, Padding = pad }] });
        model.Initialize(3);
        var rng = new DeterministicRandom(4);
        for (int i = 0; i < model.Parameters.Length; i++) model.Parameters[i] += rng.NextFloat() - 0.5f;
        int n = 2;
        var x = new Tensor(new SampleShape(inC, h, w), n);
        for (int i = 0; i < x.Length; i++) x.Span[i] = rng.NextFloat() * 2 - 1;
        var y = model.Forward(x, BatchContext.Inference);
        int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
        Assert.Equal(new SampleShape(outC, oh, ow), y.Shape);
        float[] p = model.Parameters;
        int biasAt = outC * inC * k * k;
        for (int s = 0; s < n; s++)
            for (int co = 0; co < outC; co++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                    {
                        double sum = p[biasAt + co];
                        for (int ci = 0; ci < inC; ci++)
                            for (int ky = 0; ky < k; ky++)
                                for (int kx = 0; kx < k; kx++)
                                {
                                    int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    sum += (double)p[((co * inC + ci) * k + ky) * k + kx] * x.Span[((s * inC + ci) * h + iy) * w + ix];
                                }
                        float got = y.Span[((s * outC + co) * oh + oy) * ow + ox];
                        Assert.True(Math.Abs(got - sum) <= 1e-5 * (1 + Math.Abs(sum)), $"[{s},{co},{oy},{ox}]: {got} vs {sum}");
                    }
    }
}

/// Groups of samples (each group's columns in cache, the dot products' lanes carried between
/// groups) against the convolution as one product over the whole batch, written here with the
/// kernels (one unfold, Gemm.NN, Gemm.NT, Elementwise.Sum, one fold): the same bits for the
/// output, the weight and bias gradients and the input gradient, on whichever vector path runs.
public class ConvGroupingTests
{
    [Theory]
    [InlineData(32, 14, 14, 64, 3, 1, 0, 5, 1)]    // mnist-cnn's conv2 on a smaller plane: 144 positions, 64 x 288 weights
    [InlineData(3, 4, 6, 6, 3, 1, 1, 3, 1)]        // 24 positions; 6 filters: a partial row tile; patch 27: a partial column tile
    [InlineData(1, 28, 28, 6, 5, 1, 2, 4, 3)]      // lenet5's conv1: 784 positions, patch 25; a last group of 1
    [InlineData(6, 14, 14, 16, 5, 1, 0, 5, 2)]     // lenet5's conv2: 100 positions, pairs of samples, a last group of 1 with a tail of 4
    [InlineData(2, 9, 9, 5, 2, 2, 1, 7, 8)]        // stride 2, padding: 25 positions, groups of 8 samples, so one group of 7 with a tail
    [InlineData(3, 5, 7, 4, 3, 1, 1, 9, 8)]        // 35 positions: one group of 8 and a last of 1 with a tail of 3
    public void Groups_of_samples_give_the_bits_of_one_product_over_the_batch(int inC, int h, int w, int outC, int k, int stride, int pad, int n, int group)
    {
        var shape = new SampleShape(inC, h, w);
        var rng = new DeterministicRandom(11);
        var x = new Tensor(shape, n);
        for (int i = 0; i < x.Length; i++) x.Span[i] = rng.NextFloat() * 2 - 1;
        var batch = OneProduct(inC, h, w, outC, k, stride, pad, n, x);
        // The input gradient a block of one input channel at a time, or of the chosen size.
        foreach (var (samples, fold) in new (int?, int?)[] { (group, 1), (n, null), (null, null) })
        {
            var grouped = Run(inC, h, w, outC, k, stride, pad, n, x, samples, inPlace: false, fold);
            string name = $"groups of {samples?.ToString() ?? "auto"}, folds of {fold?.ToString() ?? "auto"} channels";
            AssertBits(batch.Output, grouped.Output, $"{name}: output");
            AssertBits(batch.Gradients, grouped.Gradients, $"{name}: parameter gradients");
            AssertBits(batch.InputGradient, grouped.InputGradient, $"{name}: input gradient");
        }
    }

    /// Columns read in place from the (padded) input, sample by sample, against the unfolded batch.
    [Theory]
    [InlineData(32, 14, 10, 64, 3, 0, 3)]   // mnist-cnn's conv2 on a smaller plane: rows 8 wide, 96 positions
    [InlineData(3, 6, 16, 6, 3, 1, 2)]      // padding 1: rows 16 wide; 6 filters: a partial row tile; patch 27: a partial column tile
    [InlineData(2, 5, 8, 5, 5, 2, 3)]       // padding 2, 40 positions: panels narrower than the widest, down to 8 columns
    [InlineData(4, 7, 24, 10, 1, 0, 2)]     // a 1 x 1 kernel, rows 24 wide, patch 4
    public void Columns_in_place_give_the_bits_of_one_product_over_the_batch(int inC, int h, int w, int outC, int k, int pad, int n)
    {
        var shape = new SampleShape(inC, h, w);
        var rng = new DeterministicRandom(11);
        var x = new Tensor(shape, n);
        for (int i = 0; i < x.Length; i++) x.Span[i] = rng.NextFloat() * 2 - 1;
        var batch = OneProduct(inC, h, w, outC, k, 1, pad, n, x);
        foreach (int? fold in new int?[] { null, 2 })
        {
            var inPlace = Run(inC, h, w, outC, k, 1, pad, n, x, samples: null, inPlace: true, fold);
            AssertBits(batch.Output, inPlace.Output, $"in place, folds of {fold?.ToString() ?? "auto"}: output");
            AssertBits(batch.Gradients, inPlace.Gradients, $"in place, folds of {fold?.ToString() ?? "auto"}: parameter gradients");
            AssertBits(batch.InputGradient, inPlace.InputGradient, $"in place, folds of {fold?.ToString() ?? "auto"}: input gradient");
        }
    }

    [Fact]
    public void Columns_in_place_are_refused_where_output_rows_are_not_a_multiple_of_8()
    {
        var x = new Tensor(new SampleShape(1, 6, 6), 1);
        var ex = Assert.Throws<InvalidOperationException>(() => Run(1, 6, 6, 2, 3, 1, 0, 1, x, samples: null, inPlace: true));
        Assert.Contains("4 wide", ex.Message);
    }

    static (float[] Output, float[] Gradients, float[] InputGradient) Run(int inC, int h, int w, int outC, int k, int stride, int pad, int n, Tensor x, int? samples, bool? inPlace, int? foldChannels = null)
    {
        var model = Model.Create(new ModelSpec { Name = "c", Input = [inC, h, w], Layers = [new() { Type = "conv2d", Filters = outC, Kernel = k, Stride = stride, Padding = pad }] });
        model.Initialize(3);
        var conv = (Conv2D)model.Layers[0];
        conv.GroupSamples = samples;
        conv.ColumnsInPlace = inPlace;
        conv.FoldChannels = foldChannels;
        conv.ComputeInputGradient = true;
        var y = conv.Forward(x, BatchContext.Inference);
        var gradOut = new Tensor(conv.OutputShape, n);
        var r = new DeterministicRandom(12);
        for (int i = 0; i < gradOut.Length; i++) gradOut.Span[i] = r.NextFloat() - 0.5f;
        model.Gradients.AsSpan().Fill(0.25f);   // backward adds into what earlier micro-batches left
        var gradIn = conv.Backward(gradOut);
        return (y.Span.ToArray(), model.Gradients.ToArray(), gradIn.Span.ToArray());
    }

    /// The batch as one product: what the layer computed before it took samples in groups.
    static (float[] Output, float[] Gradients, float[] InputGradient) OneProduct(int inC, int h, int w, int outC, int k, int stride, int pad, int n, Tensor x)
    {
        var model = Model.Create(new ModelSpec { Name = "c", Input = [inC, h, w], Layers = [new() { Type = "conv2d", Filters = outC, Kernel = k, Stride = stride, Padding = pad }] });
        model.Initialize(3);
        var g = new ConvGeometry(inC, h, w, k, stride, pad);
        int positions = g.Positions, columns = n * positions, patch = g.PatchSize, weights = outC * patch;
        var col = new float[patch * columns];
        Im2Col.Unfold(x.Memory, n, g, col);
        var product = new float[outC * columns];
        Gemm.NN(model.Parameters.AsMemory(0, weights), patch, 1, col, product, outC, columns, patch, accumulate: false);
        var output = new float[n * outC * positions];
        for (int s = 0; s < n; s++)
            for (int co = 0; co < outC; co++)
                for (int p = 0; p < positions; p++)
                    output[(s * outC + co) * positions + p] = product[co * columns + s * positions + p] + model.Parameters[weights + co];

        var gradOut = new float[n * outC * positions];
        var r = new DeterministicRandom(12);
        for (int i = 0; i < gradOut.Length; i++) gradOut[i] = r.NextFloat() - 0.5f;
        var gradients = new float[model.ParameterCount];
        gradients.AsSpan().Fill(0.25f);
        var channelMajor = new float[outC * columns];
        for (int s = 0; s < n; s++)
            for (int co = 0; co < outC; co++)
                Array.Copy(gradOut, (s * outC + co) * positions, channelMajor, co * columns + s * positions, positions);
        for (int co = 0; co < outC; co++) gradients[weights + co] += Elementwise.Sum(channelMajor.AsSpan(co * columns, columns));
        Gemm.NT(channelMajor, col, gradients.AsMemory(0, weights), outC, patch, columns, accumulate: true);
        var gradCol = new float[patch * columns];
        Gemm.NN(model.Parameters.AsMemory(0, weights), 1, patch, channelMajor, gradCol, patch, columns, outC, accumulate: false);
        var gradInput = new float[x.Length];
        Im2Col.Fold(gradCol, n, g, gradInput);
        return (output, gradients, gradInput);
    }

    static void AssertBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what}[{i}]: {expected[i]:R} vs {actual[i]:R}");
    }
}
