using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Tests.Optim;

/// First and second steps computed by hand for p0 = 1, g = 0.5 then 0.25, lr = 0.1.
public class OptimizerTests
{
    static float[] TwoSteps(OptimizerSettings s, float lr = 0.1f)
    {
        var opt = Optimizer.Create(s, 1);
        var p = new[] { 1f };
        opt.Step(p, [0.5f], lr);
        float first = p[0];
        opt.Step(p, [0.25f], lr);
        return [first, p[0]];
    }

    [Fact]
    public void Sgd() => Assert.Equal([0.95f, 0.925f], TwoSteps(new(OptimizerKind.Sgd)), new FloatComparer(1e-6f));

    [Fact]
    public void Sgd_with_weight_decay()
    {
        // g' = g + 0.1 p: step 1: 1 - 0.1 (0.5 + 0.1) = 0.94; step 2: 0.94 - 0.1 (0.25 + 0.094) = 0.9056
        Assert.Equal([0.94f, 0.9056f], TwoSteps(new(OptimizerKind.Sgd, WeightDecay: 0.1)), new FloatComparer(1e-6f));
    }

    [Fact]
    public void Momentum()
    {
        // v1 = 0.5, p1 = 1 - 0.05 = 0.95; v2 = 0.9*0.5 + 0.25 = 0.7, p2 = 0.95 - 0.07 = 0.88
        Assert.Equal([0.95f, 0.88f], TwoSteps(new(OptimizerKind.Momentum, Momentum: 0.9)), new FloatComparer(1e-6f));
    }

    [Fact]
    public void Nesterov()
    {
        // v1 = 0.5, p1 = 1 - 0.1 (0.5 + 0.45) = 0.905; v2 = 0.7, p2 = 0.905 - 0.1 (0.25 + 0.63) = 0.817
        Assert.Equal([0.905f, 0.817f], TwoSteps(new(OptimizerKind.Momentum, Momentum: 0.9, Nesterov: true)), new FloatComparer(1e-6f));
    }

    [Fact]
    public void Adam_with_bias_correction()
    {
        // t=1: m = 0.05, v = 0.00025; mhat = 0.5, vhat = 0.25; p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.9
        // t=2: m = 0.045 + 0.025 = 0.07, v = 0.00024975 + 0.0000625 = 0.00031225
        //      mhat = 0.07 / 0.19 = 0.368421, vhat = 0.00031225 / 0.001999 = 0.156203; sqrt = 0.395225
        //      p = 0.9 - 0.1 * 0.368421 / 0.395225 = 0.9 - 0.093218 = 0.806782
        Assert.Equal([0.9f, 0.806782f], TwoSteps(new(OptimizerKind.Adam)), new FloatComparer(2e-6f));
    }

    [Fact]
    public void AdamW_decays_weights_decoupled()
    {
        // t=1: p = 1 - 0.1*0.1*1 = 0.99, then - 0.1 * 0.5/0.5 = 0.89
        // t=2: p = 0.89 - 0.1*0.1*0.89 = 0.8811, then - 0.093218 = 0.787882
        Assert.Equal([0.89f, 0.787882f], TwoSteps(new(OptimizerKind.AdamW, WeightDecay: 0.1)), new FloatComparer(2e-6f));
    }

    [Fact]
    public void Unknown_kind_is_a_clear_error()
    {
        var e = Assert.Throws<ArgumentException>(() => Optimizer.Create(new((OptimizerKind)9), 1));
        Assert.Contains("expected sgd, momentum, adam or adamw", e.Message);
    }

    [Theory]
    [InlineData(OptimizerKind.Sgd, "sgd")]
    [InlineData(OptimizerKind.Momentum, "momentum")]
    [InlineData(OptimizerKind.Adam, "adam")]
    [InlineData(OptimizerKind.AdamW, "adamw")]
    public void The_kind_is_written_and_read_as_the_text_checkpoints_have_always_held(OptimizerKind kind, string name)
    {
        // Checkpoints and TrainingPlan.OptimizerJson hold this JSON; a checkpoint written before the
        // kind was typed must read back to the same settings.
        string json = $$"""{"Kind":"{{name}}","Momentum":0.9,"Nesterov":false,"Beta1":0.9,"Beta2":0.999,"Epsilon":1E-08,"WeightDecay":0}""";
        Assert.Equal(json, System.Text.Json.JsonSerializer.Serialize(new OptimizerSettings(kind)));
        Assert.Equal(new OptimizerSettings(kind), System.Text.Json.JsonSerializer.Deserialize<OptimizerSettings>(json));
        Assert.Equal(name, kind.Name());
        Assert.True(OptimizerKinds.TryParse(name, out var parsed) && parsed == kind);
        Assert.False(OptimizerKinds.TryParse("rmsprop", out _));
    }

    [Theory]
    [InlineData(OptimizerKind.Sgd, false, 0.01)]
    [InlineData(OptimizerKind.Momentum, false, 0.0)]
    [InlineData(OptimizerKind.Momentum, true, 0.01)]
    [InlineData(OptimizerKind.Adam, false, 0.01)]
    [InlineData(OptimizerKind.AdamW, false, 0.01)]
    public void A_long_vector_updates_each_element_to_the_bits_of_a_one_element_update(OptimizerKind kind, bool nesterov, double weightDecay)
    {
        // Long vectors go 16 elements at a time where the CPU has wide vectors; a one-element
        // optimizer only takes the scalar path. Three steps, so the state (velocity, m, v) is used too.
        const int n = 53;
        var settings = new OptimizerSettings(kind, Nesterov: nesterov, WeightDecay: weightDecay);
        var rng = new DeterministicRandom(9);
        // Small parameters, so the last bit of each update shows in the result.
        var p = Enumerable.Range(0, n).Select(_ => (rng.NextFloat() - 0.5f) * 1e-3f).ToArray();
        var grads = Enumerable.Range(0, 3).Select(_ => Enumerable.Range(0, n).Select(_ => (rng.NextFloat() - 0.5f) * 0.1f).ToArray()).ToArray();
        var whole = Optimizer.Create(settings, n);
        var together = (float[])p.Clone();
        foreach (var g in grads) whole.Step(together, g, 0.05f);
        for (int i = 0; i < n; i++)
        {
            var single = Optimizer.Create(settings, 1);
            var x = new[] { p[i] };
            foreach (var g in grads) single.Step(x, [g[i]], 0.05f);
            Assert.True(BitConverter.SingleToInt32Bits(x[0]) == BitConverter.SingleToInt32Bits(together[i]), $"{kind} element {i}: {x[0]} vs {together[i]}");
            for (int s = 0; s < whole.State.Count; s++)
                Assert.True(BitConverter.SingleToInt32Bits(single.State[s].Values[0]) == BitConverter.SingleToInt32Bits(whole.State[s].Values[i]),
                    $"{kind} {whole.State[s].Name}[{i}]: {single.State[s].Values[0]} vs {whole.State[s].Values[i]}");
        }
    }

    [Theory]
    [InlineData(OptimizerKind.Sgd, false)]
    [InlineData(OptimizerKind.Momentum, true)]
    [InlineData(OptimizerKind.Adam, false)]
    [InlineData(OptimizerKind.AdamW, false)]
    public void A_step_applied_in_ranges_gives_the_bits_of_one_pass(OptimizerKind kind, bool nesterov)
    {
        // 1,000 elements in ranges of 17, 16, 300, 1 and the rest: vector bodies and scalar tails at
        // every offset, three steps so that the state carries over.
        var settings = new OptimizerSettings(kind, Nesterov: nesterov, WeightDecay: 0.01);
        var rng = new DeterministicRandom(8);
        float[] Random() => Enumerable.Range(0, 1000).Select(_ => rng.NextFloat() - 0.5f).ToArray();
        var p = Random();
        var ranged = (float[])p.Clone();
        var spare = new float[p.Length];
        var whole = Optimizer.Create(settings, p.Length);
        var pieces = Optimizer.Create(settings, p.Length);
        int[] cuts = [0, 17, 33, 333, 334, 1000];
        for (int step = 0; step < 3; step++)
        {
            var g = Random();
            whole.Step(p, g, 0.05f);
            // The pieces read one parameter vector and write the other, as the training step does.
            pieces.BeginStep();
            for (int c = cuts.Length - 2; c >= 0; c--)   // any order: ranges are independent
            {
                int at = cuts[c], n = cuts[c + 1] - cuts[c];
                pieces.ApplyRange(ranged.AsSpan(at, n), spare.AsSpan(at, n), g.AsSpan(at, n), 0.05f, at);
            }
            pieces.EndStep();
            (ranged, spare) = (spare, ranged);
        }
        Assert.Equal(p, ranged);
        for (int i = 0; i < whole.State.Count; i++) Assert.Equal(whole.State[i].Values, pieces.State[i].Values);
        Assert.Throws<ArgumentException>(() => pieces.ApplyRange(ranged.AsSpan(990, 10), spare.AsSpan(990, 10), new float[10], 0.05f, 995));
    }

    [Theory]
    [InlineData(OptimizerKind.Momentum)]
    [InlineData(OptimizerKind.Adam)]
    [InlineData(OptimizerKind.AdamW)]
    public void UndoStep_gives_back_the_state_and_step_count_before_the_step(OptimizerKind kind)
    {
        var settings = new OptimizerSettings(kind, WeightDecay: 0.01);
        var rng = new DeterministicRandom(9);
        float[] Random() => Enumerable.Range(0, 100).Select(_ => rng.NextFloat() - 0.5f).ToArray();
        var opt = Optimizer.Create(settings, 100);
        var p = Random();
        opt.Step(p, Random(), 0.05f);
        var before = opt.State.Select(s => s.Values.ToArray()).ToArray();
        long steps = opt.Steps;
        var q = (float[])p.Clone();
        opt.BeginStep();
        opt.ApplyRange(p, q, Random(), 0.05f, 0);
        opt.EndStep();
        Assert.NotEqual(before[0], opt.State[0].Values);
        opt.UndoStep();
        Assert.Equal(steps, opt.Steps);
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], opt.State[i].Values);
    }

    sealed class FloatComparer(float tol) : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => MathF.Abs(x - y) <= tol;
        public int GetHashCode(float obj) => 0;
    }
}

public class ScheduleTests
{
    [Fact]
    public void Constant_step_cosine_and_warmup()
    {
        Assert.Equal(0.1, LearningRateSchedule.Parse("constant", 0.1, 100, 0).At(57), 12);
        var step = LearningRateSchedule.Parse("step:10:0.5", 0.1, 100, 0);
        Assert.Equal(0.1, step.At(9), 12);
        Assert.Equal(0.05, step.At(10), 12);
        Assert.Equal(0.025, step.At(25), 12);
        var cos = LearningRateSchedule.Parse("cosine", 0.1, 100, 0);
        Assert.Equal(0.1, cos.At(0), 12);
        Assert.Equal(0.05, cos.At(50), 12);
        Assert.Equal(0.0, cos.At(100), 12);
        var cosMin = LearningRateSchedule.Parse("cosine:0.01", 0.1, 100, 0);
        Assert.Equal(0.01, cosMin.At(100), 12);
        var warm = LearningRateSchedule.Parse("constant", 0.1, 100, 4);
        Assert.Equal([0.025, 0.05, 0.075, 0.1, 0.1], Enumerable.Range(0, 5).Select(s => Math.Round(warm.At(s), 12)));
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("step:0:0.5")]
    [InlineData("step:10")]
    [InlineData("cosine:-1")]
    public void Bad_schedule_is_a_clear_error(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => LearningRateSchedule.Parse(text, 0.1, 100, 0));
        Assert.StartsWith("--schedule: expected", e.Message);
    }
}
