using System.Globalization;

namespace DistTrain.Cnn.Optim;

/// The learning rate as a function of the (0-based) global step.
public abstract record LearningRateSchedule(double BaseRate)
{
    public abstract double At(long step);

    /// Parses --schedule: "constant", "step:EVERY:GAMMA" (multiply by GAMMA every EVERY steps),
    /// "cosine" or "cosine:MIN" (cosine decay to MIN over the run); warmupSteps > 0 adds a linear warm-up.
    public static LearningRateSchedule Parse(string text, double baseRate, long totalSteps, long warmupSteps)
    {
        var parts = text.Split(':');
        LearningRateSchedule inner = parts[0] switch
        {
            "constant" when parts.Length == 1 => new ConstantSchedule(baseRate),
            "step" when parts.Length == 3 && long.TryParse(parts[1], out long every) && every > 0
                        && double.TryParse(parts[2], CultureInfo.InvariantCulture, out double gamma) && gamma > 0
                => new StepDecaySchedule(baseRate, every, gamma),
            "cosine" when parts.Length == 1 => new CosineSchedule(baseRate, Math.Max(1, totalSteps), 0),
            "cosine" when parts.Length == 2 && double.TryParse(parts[1], CultureInfo.InvariantCulture, out double min) && min >= 0
                => new CosineSchedule(baseRate, Math.Max(1, totalSteps), min),
            _ => throw new ArgumentException($"--schedule: expected constant, step:EVERY:GAMMA, cosine or cosine:MIN, got '{text}'"),
        };
        if (warmupSteps < 0) throw new ArgumentException($"--warmup: expected a number of steps >= 0, got {warmupSteps}");
        return warmupSteps > 0 ? new WarmupSchedule(inner, warmupSteps) : inner;
    }
}

public sealed record ConstantSchedule(double BaseRate) : LearningRateSchedule(BaseRate)
{
    public override double At(long step) => BaseRate;
}

public sealed record StepDecaySchedule(double BaseRate, long Every, double Gamma) : LearningRateSchedule(BaseRate)
{
    public override double At(long step) => BaseRate * Math.Pow(Gamma, step / Every);
}

public sealed record CosineSchedule(double BaseRate, long TotalSteps, double MinRate) : LearningRateSchedule(BaseRate)
{
    public override double At(long step) =>
        MinRate + (BaseRate - MinRate) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(step, TotalSteps) / TotalSteps));
}

/// Linear ramp from BaseRate/WarmupSteps up to the inner schedule over the first WarmupSteps steps.
public sealed record WarmupSchedule(LearningRateSchedule Inner, long WarmupSteps) : LearningRateSchedule(Inner.BaseRate)
{
    public override double At(long step) =>
        step < WarmupSteps ? Inner.At(step) * (step + 1) / WarmupSteps : Inner.At(step);
}
