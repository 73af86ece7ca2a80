using DistTrain.Cnn.Layers;

namespace DistTrain.Cnn.Tests.Layers;

/// Layers with a vector fast path must give the bits of their element-by-element definition,
/// so that results never depend on the CPU.
public class VectorPathTests
{
    [Fact]
    public void MaxPool_2x2_takes_the_first_maximum_of_each_window_with_ties_signed_zeros_and_NaN()
    {
        // 3 samples x 5 channels of 6x6: 135 windows, so 16 full vectors and a tail of 7. Values
        // come from a small set so that many windows tie, and include -0, +0 and NaN.
        int n = 3, c = 5, h = 6, w = 6;
        var pool = new MaxPool2D(2);
        pool.Build(new SampleShape(c, h, w));
        var input = new Tensor(new SampleShape(c, h, w), n);
        var rng = new DeterministicRandom(21);
        float[] choices = [-0f, 0f, 1f, 1f, 2f, -3f, float.NaN];
        for (int i = 0; i < input.Length; i++) input.Span[i] = choices[rng.NextInt(choices.Length)];
        var output = pool.Forward(input, BatchContext.Inference);

        var gradOut = new Tensor(pool.OutputShape, n);
        for (int i = 0; i < gradOut.Length; i++) gradOut.Span[i] = i + 1;   // each window's gradient names it
        var gradIn = pool.Backward(gradOut);

        var x = input.Span;
        int o = 0;
        var expectedGrad = new float[input.Length];
        for (int plane = 0; plane < n * c; plane++)
            for (int oy = 0; oy < h / 2; oy++)
                for (int ox = 0; ox < w / 2; ox++, o++)
                {
                    int first = plane * h * w + 2 * oy * w + 2 * ox, best = first;
                    foreach (int i in new[] { first + 1, first + w, first + w + 1 })
                        if (x[i] > x[best]) best = i;
                    Assert.True(BitConverter.SingleToInt32Bits(x[best]) == BitConverter.SingleToInt32Bits(output.Span[o]), $"window {o}: {x[best]} vs {output.Span[o]}");
                    expectedGrad[best] += o + 1;
                }
        Assert.Equal(expectedGrad, gradIn.Span.ToArray());
    }

    [Fact]
    public void Dropout_mask_is_the_hash_of_each_element_whatever_the_layer_size()
    {
        // 37 elements per sample: two vectors of 16 and a tail of 5.
        var shape = new SampleShape(37, 1, 1);
        var dropout = new Dropout(0.3) { Salt = 4 };
        dropout.Build(shape);
        int[] ids = [17, 40_000, 3];
        var input = new Tensor(shape, ids.Length);
        for (int i = 0; i < input.Length; i++) input.Span[i] = 1.5f + i;
        var context = new BatchContext(true, Seed: 99, Epoch: 2, Step: 5, SampleIds: ids);
        var output = dropout.Forward(input, context);
        var grad = new Tensor(shape, ids.Length);
        grad.Span.Fill(2f);
        var gradIn = dropout.Backward(grad);

        float keep = 0.7f, scale = 1f / keep;
        for (int s = 0; s < ids.Length; s++)
        {
            ulong layerKey = DeterministicRandom.Derive(DeterministicRandom.Derive(99UL, 2UL, 5UL, (ulong)ids[s]), 4UL);
            for (int e = 0; e < 37; e++)
            {
                float m = DeterministicRandom.HashToUnitFloat(layerKey + (ulong)e * 0x9E3779B97F4A7C15UL) < keep ? scale : 0f;
                int i = s * 37 + e;
                Assert.True(BitConverter.SingleToInt32Bits(input.Span[i] * m) == BitConverter.SingleToInt32Bits(output.Span[i]), $"sample {s} element {e}");
                Assert.True(BitConverter.SingleToInt32Bits(2f * m) == BitConverter.SingleToInt32Bits(gradIn.Span[i]), $"gradient of sample {s} element {e}");
            }
        }
    }
}
