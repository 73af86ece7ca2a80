using DistTrain.Cnn.Data;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;

namespace DistTrain.Cnn.Tests.Layers;

/// BatchNorm (training and evaluation, its running statistics summed exactly across micro-batches)
/// and global average pooling.
public class NormalizationTests
{
    [Theory]
    [InlineData(3, 4, 5, 3)]   // 2-D: three channels of 4 x 5, three samples
    [InlineData(6, 1, 1, 4)]   // 1-D: six features, four samples
    [InlineData(2, 3, 3, 1)]   // one sample: the statistics come from its positions alone
    public void BatchNorm_in_training_passes_the_finite_difference_check(int c, int h, int w, int batch) =>
        GradientCheck.Run(new LayerSpec { Type = "batchnorm" }, new SampleShape(c, h, w), batch, seed: (ulong)(c * 10 + h));

    [Theory]
    [InlineData(3, 4, 5, 2)]
    [InlineData(2, 1, 7, 3)]
    public void Global_average_pooling_passes_the_finite_difference_check(int c, int h, int w, int batch) =>
        GradientCheck.Run(new LayerSpec { Type = "globalavgpool" }, new SampleShape(c, h, w), batch, seed: 5);

    static (BatchNorm Layer, Model Model) Make(int c, int h, int w)
    {
        var model = Model.Create(new ModelSpec { Name = "bn", Input = [c, h, w], Layers = [new() { Type = "batchnorm" }] });
        model.Initialize(1);
        return ((BatchNorm)model.Layers[0], model);
    }

    static Tensor Random(SampleShape shape, int n, ulong seed, float scale, float offset)
    {
        var t = new Tensor(shape, n);
        var rng = new DeterministicRandom(seed);
        for (int i = 0; i < t.Length; i++) t.Span[i] = (rng.NextFloat() * 2 - 1) * scale + offset;
        return t;
    }

    [Fact]
    public void Training_normalises_each_channel_of_the_micro_batch_and_reports_its_statistics()
    {
        var (bn, model) = Make(2, 3, 4);
        model.Parameters[0] = 2f; model.Parameters[1] = 0.5f;    // gamma
        model.Parameters[2] = -1f; model.Parameters[3] = 3f;     // beta
        var x = Random(new SampleShape(2, 3, 4), 5, 7, 4f, 10f);
        var y = bn.Forward(x, new BatchContext(true, 1, 0, 0, new int[5])).Span.ToArray();
        for (int ch = 0; ch < 2; ch++)
        {
            var xs = Enumerable.Range(0, 5).SelectMany(s => x.Span.Slice((s * 2 + ch) * 12, 12).ToArray()).Select(v => (double)v).ToArray();
            var ys = Enumerable.Range(0, 5).SelectMany(s => y.AsSpan((s * 2 + ch) * 12, 12).ToArray()).Select(v => (double)v).ToArray();
            double mean = ys.Average(), std = Math.Sqrt(ys.Select(v => (v - mean) * (v - mean)).Average());
            Assert.Equal(model.Parameters[2 + ch], mean, 4);          // beta
            Assert.Equal(model.Parameters[ch], std, 3);               // gamma (eps = 1e-5 against a variance near 5)
            // The running statistics' slots hold N x the micro-batch's mean and N x its unbiased variance.
            double xm = xs.Average(), unbiased = xs.Select(v => (v - xm) * (v - xm)).Sum() / (xs.Length - 1);
            Assert.Equal(5 * xm, model.Gradients[4 + ch], 3);
            Assert.Equal(5 * unbiased, model.Gradients[6 + ch], 2);
        }
    }

    [Fact]
    public void Evaluation_normalises_with_the_running_statistics()
    {
        var (bn, model) = Make(2, 1, 3);
        float[] p = [1.5f, 0.5f, -0.2f, 0.3f, 4f, -2f, 9f, 0.25f];   // gamma, beta, running mean, running variance
        p.CopyTo(model.Parameters, 0);
        var x = Random(new SampleShape(2, 1, 3), 2, 3, 3f, 0f);
        var y = bn.Forward(x, BatchContext.Inference).Span;
        for (int s = 0; s < 2; s++)
            for (int ch = 0; ch < 2; ch++)
                for (int i = 0; i < 3; i++)
                {
                    int at = (s * 2 + ch) * 3 + i;
                    double expected = p[ch] * (x.Span[at] - p[4 + ch]) / Math.Sqrt(p[6 + ch] + BatchNorm.Epsilon) + p[2 + ch];
                    Assert.Equal(expected, y[at], 4);
                }
        Assert.All(model.Gradients, g => Assert.Equal(0f, g));   // evaluation reports nothing
        Assert.Throws<InvalidOperationException>(() => bn.Backward(new Tensor(new SampleShape(2, 1, 3), 2)));
    }

    static readonly ModelSpec Small = new()
    {
        Name = "bn-net", Input = [3, 8, 8],
        Layers =
        [
            new() { Type = "conv2d", Filters = 4, Kernel = 3, Padding = 1 }, new() { Type = "batchnorm" }, new() { Type = "relu" },
            new() { Type = "globalavgpool" }, new() { Type = "dense", Units = 6 }, new() { Type = "batchnorm" }, new() { Type = "relu" },
            new() { Type = "dense", Units = 10 },
        ],
    };

    [Fact]
    public void A_step_updates_the_running_statistics_from_the_whole_global_batch_and_leaves_them_out_of_the_optimizer()
    {
        var data = DatasetFolder.Synthetic(64, 8, seed: 3, height: 8, width: 8, channels: 3);
        var plan = new TrainingPlan
        {
            Model = Small, Optimizer = new OptimizerSettings(OptimizerKind.Adam, WeightDecay: 0.1), LearningRate = 0.01,
            GlobalBatch = 32, MicroBatch = 8, Seed = 4, Epochs = 1,
        };
        var replica = Replica.Initialized(plan, data.Train.Count, data.Train, threads: 1);
        var before = (float[])replica.Model.Parameters.Clone();
        var bn = (BatchNorm)replica.Model.Layers[1];
        var conv = replica.Model.Layers[0];
        var ids = replica.Samples(0, 0, plan.MicroBatchCount).ToArray();

        // The running mean the step should reach: each micro-batch's conv output mean per channel, weighted by its 8 samples.
        var probe = Model.Create(new ModelSpec { Name = "conv", Input = [3, 8, 8], Layers = [Small.Layers[0]] });
        before.AsSpan(0, probe.ParameterCount).CopyTo(probe.Parameters);
        var expected = new double[4];
        for (int m = 0; m < 4; m++)
        {
            var x = new Tensor(new SampleShape(3, 8, 8), 8);
            data.Train.Gather(ids.AsSpan(m * 8, 8), x.Span, new int[8]);
            var y = probe.Forward(x, BatchContext.Inference).Span;
            for (int ch = 0; ch < 4; ch++)
            {
                double sum = 0;
                for (int s = 0; s < 8; s++) for (int i = 0; i < 64; i++) sum += y[(s * 4 + ch) * 64 + i];
                expected[ch] += 8 * (sum / (8 * 64));
            }
        }
        Assert.True(replica.Compute(0, plan.MicroBatchCount, LocalExchange.Instance).Reduced);
        replica.Apply();
        var after = replica.Model.Parameters;
        int runningMean = bn.ParameterOffset + 2 * 4, runningVar = bn.ParameterOffset + 3 * 4;
        for (int ch = 0; ch < 4; ch++)
            Assert.Equal(0.9 * 0 + 0.1 * expected[ch] / 32, after[runningMean + ch], 4);
        // Running variances moved from 1 by momentum towards positive batch variances; weight decay and Adam would have moved them otherwise.
        for (int ch = 0; ch < 4; ch++) Assert.InRange(after[runningVar + ch], 0.9f, 10f);
        Assert.NotEqual(before[conv.ParameterOffset], after[conv.ParameterOffset]);   // the trained parameters did move
        Assert.Equal(0f, replica.Optimizer.State[0].Values[runningMean]);           // no optimizer state for a statistic
    }

    [Fact]
    public void With_batch_norm_the_result_is_bitwise_the_same_for_any_number_of_lanes_and_replicas()
    {
        var data = DatasetFolder.Synthetic(96, 8, seed: 5, height: 8, width: 8, channels: 3);
        var plan = new TrainingPlan
        {
            Model = Small, Optimizer = new OptimizerSettings(OptimizerKind.Momentum), LearningRate = 0.05,
            GlobalBatch = 32, MicroBatch = 8, Seed = 2, Epochs = 2, Augment = new Augmentation(1, true),
        };
        string Train(int threads)
        {
            var replica = Replica.Initialized(plan, data.Train.Count, data.Train, threads: threads);
            for (long t = 0; t < replica.TotalSteps; t++)
            {
                replica.Compute(0, plan.MicroBatchCount, LocalExchange.Instance);
                replica.Apply();
            }
            return ParameterHash.Sha256Hex(replica.Model.Parameters);
        }
        string one = Train(1);
        Assert.Equal(one, Train(2));
        Assert.Equal(one, Train(3));
    }
}

/// Residual blocks and the ResNet-20 preset built from them.
public class ResidualBlockTests
{
    // eps 1e-3: the block's ReLUs follow batch norms, whose outputs crowd around 0, and a probe of
    // 1e-2 crossed a kink in two of these cases; with 1e-3 none does and the float32 noise of these
    // small blocks stays inside the tolerance.
    [Theory]
    [InlineData(3, 3, 6, 6, 1, 2)]   // identity shortcut
    [InlineData(2, 4, 6, 5, 2, 2)]   // projection: more filters and stride 2 (odd width)
    [InlineData(3, 3, 5, 5, 2, 2)]   // projection for the stride alone
    public void A_residual_block_passes_the_finite_difference_check(int inC, int filters, int h, int w, int stride, int batch) =>
        GradientCheck.Run(new LayerSpec { Type = "residual", Filters = filters, Stride = stride }, new SampleShape(inC, h, w), batch, seed: (ulong)(filters * 7 + stride), eps: 1e-3);

    [Fact]
    public void ResNet20_has_the_papers_shape_and_names_its_tensors_by_part()
    {
        var model = Model.Create(Presets.Fit(Presets.ResNet20, [3, 32, 32], 10));
        // 20 layers with weights: the first convolution, 9 blocks of 2, the dense layer.
        var blocks = model.Layers.OfType<ResidualBlock>().ToArray();
        Assert.Equal(9, blocks.Length);
        Assert.Equal(2, blocks.Count(b => b.Projects));
        Assert.Equal(new SampleShape(64, 8, 8), blocks[^1].OutputShape);
        Assert.Equal(new SampleShape(10, 1, 1), model.OutputShape);
        // About 0.27M weights, as the paper says (ours add convolution biases and the projections' batch norms).
        int trained = model.ParameterCount - model.StatisticRanges.Sum(r => r.Length);
        Assert.InRange(trained, 270_000, 280_000);
        Assert.Contains(model.Views, v => v.Name == "res4.shortcut.conv.weight" && v.Shape.SequenceEqual([32, 16, 1, 1]));
        Assert.Contains(model.Views, v => v.Name == "res1.bn2.running_var");
        // Every statistic range is a batch norm's running mean and variance.
        Assert.Equal(model.Views.Where(v => v.Name.EndsWith(".running_mean") || v.Name.EndsWith(".running_var")).Sum(v => v.Length),
                     model.StatisticRanges.Sum(r => r.Length));
        // Any input size and channel count: MNIST's 1 x 28 x 28 ends in 64 x 7 x 7.
        var mnist = Model.Create(Presets.Fit(Presets.ResNet20, [1, 28, 28], 10));
        Assert.Equal(new SampleShape(64, 7, 7), mnist.Layers.OfType<ResidualBlock>().Last().OutputShape);
    }
}

/// BatchNorm's vectorised loops against its plain definition, bit for bit, on whatever vector
/// path this process runs (tests/run.sh runs the Layers tests natively and under both ISA switches).
public class BatchNormDefinitionTests
{
    /// The documented order: per plane, element i of each whole block of 8 into lane i mod 8, the
    /// rest into a tail; then lane j + lane j + 4, ((l0 + l1) + (l2 + l3)), + tail.
    static double Sum(Func<int, double> term, int n, int plane, Func<int, int, int> index)
    {
        var lanes = new double[8];
        double tail = 0;
        for (int s = 0; s < n; s++)
        {
            int whole = plane / 8 * 8;
            for (int i = 0; i < whole; i++) lanes[i % 8] += term(index(s, i));
            for (int i = whole; i < plane; i++) tail += term(index(s, i));
        }
        double l0 = lanes[0] + lanes[4], l1 = lanes[1] + lanes[5], l2 = lanes[2] + lanes[6], l3 = lanes[3] + lanes[7];
        return ((l0 + l1) + (l2 + l3)) + tail;
    }

    [Theory]
    [InlineData(3, 7, 5, 4)]    // planes of 35: four blocks of 8 and a tail of 3
    [InlineData(2, 4, 4, 3)]    // planes of 16: no tail
    [InlineData(5, 1, 1, 6)]    // 1-D: planes of one value, all tail
    public void Forward_and_backward_are_bitwise_the_plain_definition(int c, int h, int w, int n)
    {
        var model = Model.Create(new ModelSpec { Name = "bn", Input = [c, h, w], Layers = [new() { Type = "batchnorm" }] });
        var bn = (BatchNorm)model.Layers[0];
        bn.ComputeInputGradient = true;
        var rng = new DeterministicRandom(17);
        for (int i = 0; i < 2 * c; i++) model.Parameters[i] = rng.NextFloat() * 2 - 0.5f;
        var x = new Tensor(new SampleShape(c, h, w), n);
        // Magnitudes far apart. The sums' double order rarely shows once rounded to float (swapping
        // two lanes in the combination went unnoticed); what this pins is every vectorised
        // element-wise loop (rewriting dx's formula in the vector path alone fails it).
        for (int i = 0; i < x.Length; i++) x.Span[i] = (rng.NextFloat() - 0.3f) * (i % 3 == 0 ? 3e5f : i % 3 == 1 ? 7f : 1e-4f);
        var dyT = new Tensor(new SampleShape(c, h, w), n);
        for (int i = 0; i < dyT.Length; i++) dyT.Span[i] = rng.NextFloat() - 0.5f;
        var y = bn.Forward(x, new BatchContext(true, 1, 0, 0, new int[n])).Span.ToArray();
        var dx = bn.Backward(dyT).Span.ToArray();

        int plane = h * w;
        long count = (long)n * plane;
        float[] xs = x.Span.ToArray(), dys = dyT.Span.ToArray(), p = model.Parameters;
        for (int ch = 0; ch < c; ch++)
        {
            int Index(int s, int i) => (s * c + ch) * plane + i;
            double mean = Sum(k => xs[k], n, plane, Index) / count;
            double squares = Sum(k => (xs[k] - mean) * (xs[k] - mean), n, plane, Index);
            float invStd = (float)(1 / Math.Sqrt(squares / count + BatchNorm.Epsilon)), meanF = (float)mean;
            var xhat = new float[xs.Length];
            for (int s = 0; s < n; s++)
                for (int i = 0; i < plane; i++)
                {
                    int k = Index(s, i);
                    xhat[k] = (xs[k] - meanF) * invStd;
                    Assert.Equal(BitConverter.SingleToInt32Bits(p[ch] * xhat[k] + p[c + ch]), BitConverter.SingleToInt32Bits(y[k]));
                }
            Assert.Equal((float)(n * mean), model.Gradients[2 * c + ch]);
            Assert.Equal((float)(n * (squares / (count - 1))), model.Gradients[3 * c + ch]);
            double sumDy = Sum(k => dys[k], n, plane, Index), sumDyXhat = Sum(k => (double)dys[k] * xhat[k], n, plane, Index);
            Assert.Equal((float)sumDyXhat, model.Gradients[ch]);
            Assert.Equal((float)sumDy, model.Gradients[c + ch]);
            float scale = p[ch] * invStd, meanDy = (float)(sumDy / count), meanDyXhat = (float)(sumDyXhat / count);
            for (int s = 0; s < n; s++)
                for (int i = 0; i < plane; i++)
                {
                    int k = Index(s, i);
                    Assert.Equal(BitConverter.SingleToInt32Bits(scale * (dys[k] - meanDy - xhat[k] * meanDyXhat)), BitConverter.SingleToInt32Bits(dx[k]));
                }
        }
    }
}
