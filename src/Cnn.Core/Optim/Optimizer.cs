using System.Numerics;
using System.Text.Json.Serialization;

namespace DistTrain.Cnn.Optim;

/// Which update rule an optimizer applies. Its JSON text ("momentum", ...) is what checkpoints and
/// training plans have always held, so existing checkpoints resume.
[JsonConverter(typeof(JsonStringEnumConverter<OptimizerKind>))]
public enum OptimizerKind
{
    [JsonStringEnumMemberName("sgd")] Sgd,
    [JsonStringEnumMemberName("momentum")] Momentum,
    [JsonStringEnumMemberName("adam")] Adam,
    [JsonStringEnumMemberName("adamw")] AdamW,
}

/// The kinds' names as the command line (--optimizer), checkpoints and logs spell them.
public static class OptimizerKinds
{
    public static readonly IReadOnlyList<string> Names = ["sgd", "momentum", "adam", "adamw"];

    public static string Name(this OptimizerKind kind) =>
        (uint)kind < (uint)Names.Count ? Names[(int)kind] : throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown optimizer kind");

    public static OptimizerKind Parse(string name) =>
        TryParse(name, out var kind) ? kind : throw new ArgumentException($"optimizer '{name}': expected {string.Join("|", Names)}");

    public static bool TryParse(string name, out OptimizerKind kind)
    {
        int i = Names.IndexOf(name);
        kind = (OptimizerKind)Math.Max(i, 0);
        return i >= 0;
    }

    static int IndexOf(this IReadOnlyList<string> names, string name)
    {
        for (int i = 0; i < names.Count; i++) if (names[i] == name) return i;
        return -1;
    }
}

/// What an optimizer is, as data: recorded in checkpoints and sent to workers.
public sealed record OptimizerSettings(
    OptimizerKind Kind = OptimizerKind.Momentum,
    double Momentum = 0.9,
    bool Nesterov = false,
    double Beta1 = 0.9,
    double Beta2 = 0.999,
    double Epsilon = 1e-8,
    double WeightDecay = 0.0)
{
}

/// Updates ONE flat parameter vector from ONE flat gradient vector; its state is flat too, so
/// checkpoints and the coordinator can treat it as a few named float arrays. Each update runs a
/// Vector<float> at a time wherever the CPU has vectors (256 bits with AVX2 or AVX-512: the loops
/// are bound by memory, not width) and element by element for the rest; both make the same float
/// operations in the same order (no fused multiply-add), so the same bits.
public abstract class Optimizer
{
    protected Optimizer(OptimizerSettings settings, int length)
    {
        Settings = settings;
        Length = length;
    }

    public OptimizerSettings Settings { get; }
    public int Length { get; }
    /// Updates applied so far (Adam's bias correction uses it).
    public long Steps { get; set; }

    /// Named state vectors, each of <see cref="Length"/> floats, in a fixed order.
    public abstract IReadOnlyList<(string Name, float[] Values)> State { get; }

    public void Step(Span<float> parameters, ReadOnlySpan<float> gradients, float learningRate)
    {
        if (parameters.Length != Length || gradients.Length != Length)
            throw new ArgumentException($"optimizer: expected vectors of {Length}, got {parameters.Length} and {gradients.Length}");
        Steps++;
        Apply(parameters, gradients, learningRate, 0);
    }

    /// One step in pieces (threads may update disjoint ranges at once): BeginStep, then ApplyRange
    /// over ranges that cover the vector once. Every element gets the operations of Step.
    public void BeginStep() => Steps++;

    /// Updates elements [offset, offset + parameters.Length): `parameters` and `gradients` are those
    /// ranges of the whole vectors.
    public void ApplyRange(Span<float> parameters, ReadOnlySpan<float> gradients, float learningRate, int offset)
    {
        if (offset < 0 || offset + parameters.Length > Length || gradients.Length != parameters.Length)
            throw new ArgumentException($"optimizer: range [{offset}, {offset + parameters.Length}) of {Length} with {gradients.Length} gradients");
        Apply(parameters, gradients, learningRate, offset);
    }

    /// p and g are elements [offset, offset + p.Length) of the vectors; the state is read there too.
    protected abstract void Apply(Span<float> p, ReadOnlySpan<float> g, float lr, int offset);

    public static Optimizer Create(OptimizerSettings s, int length) => s.Kind switch
    {
        OptimizerKind.Sgd => new Sgd(s, length),
        OptimizerKind.Momentum => new MomentumSgd(s, length),
        OptimizerKind.Adam or OptimizerKind.AdamW => new Adam(s, length),
        _ => throw new ArgumentException($"optimizer kind {(int)s.Kind}: expected sgd, momentum, adam or adamw"),
    };
}

/// p -= lr * (g + wd * p)
public sealed class Sgd(OptimizerSettings s, int length) : Optimizer(s, length)
{
    public override IReadOnlyList<(string Name, float[] Values)> State => [];

    protected override void Apply(Span<float> p, ReadOnlySpan<float> g, float lr, int offset)
    {
        float wd = (float)Settings.WeightDecay;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            unsafe
            {
                fixed (float* pp = p)
                fixed (float* gp = g)
                {
                    Vector<float> vlr = new Vector<float>(lr), vwd = new Vector<float>(wd);
                    for (; i + Vector<float>.Count <= p.Length; i += Vector<float>.Count)
                    {
                        var x = Vector.Load(pp + i);
                        (x - vlr * (Vector.Load(gp + i) + vwd * x)).Store(pp + i);
                    }
                }
            }
        for (; i < p.Length; i++) p[i] -= lr * (g[i] + wd * p[i]);
    }
}

/// v = mu * v + (g + wd * p); p -= lr * v, or with Nesterov p -= lr * (g + wd * p + mu * v).
public sealed class MomentumSgd : Optimizer
{
    readonly float[] _velocity;

    public MomentumSgd(OptimizerSettings s, int length) : base(s, length) => _velocity = new float[length];

    public override IReadOnlyList<(string Name, float[] Values)> State => [("velocity", _velocity)];

    protected override void Apply(Span<float> p, ReadOnlySpan<float> g, float lr, int offset)
    {
        float mu = (float)Settings.Momentum, wd = (float)Settings.WeightDecay;
        var v = _velocity.AsSpan(offset, p.Length);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            unsafe
            {
                fixed (float* pp = p)
                fixed (float* gp = g)
                fixed (float* vp = v)
                {
                    Vector<float> vlr = new Vector<float>(lr), vwd = new Vector<float>(wd), vmu = new Vector<float>(mu);
                    bool nesterov = Settings.Nesterov;
                    for (; i + Vector<float>.Count <= p.Length; i += Vector<float>.Count)
                    {
                        var x = Vector.Load(pp + i);
                        var grad = Vector.Load(gp + i) + vwd * x;
                        var vel = vmu * Vector.Load(vp + i) + grad;
                        vel.Store(vp + i);
                        (x - (nesterov ? vlr * (grad + vmu * vel) : vlr * vel)).Store(pp + i);
                    }
                }
            }
        for (; i < p.Length; i++)
        {
            float grad = g[i] + wd * p[i];
            v[i] = mu * v[i] + grad;
            p[i] -= Settings.Nesterov ? lr * (grad + mu * v[i]) : lr * v[i];
        }
    }
}

/// Adam with bias correction. "adam" adds wd * p to the gradient (L2); "adamw" decays the
/// weights directly (p -= lr * wd * p), decoupled from the adaptive step.
public sealed class Adam : Optimizer
{
    readonly float[] _m, _v;

    public Adam(OptimizerSettings s, int length) : base(s, length)
    {
        _m = new float[length];
        _v = new float[length];
    }

    public override IReadOnlyList<(string Name, float[] Values)> State => [("m", _m), ("v", _v)];

    protected override void Apply(Span<float> p, ReadOnlySpan<float> g, float lr, int offset)
    {
        double b1 = Settings.Beta1, b2 = Settings.Beta2;
        bool decoupled = Settings.Kind == OptimizerKind.AdamW;
        float wd = (float)Settings.WeightDecay, eps = (float)Settings.Epsilon;
        float c1 = (float)(1 - Math.Pow(b1, Steps)), c2 = (float)(1 - Math.Pow(b2, Steps));
        float fb1 = (float)b1, fb2 = (float)b2, ob1 = (float)(1 - b1), ob2 = (float)(1 - b2);
        Span<float> ms = _m.AsSpan(offset, p.Length), vs = _v.AsSpan(offset, p.Length);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            unsafe
            {
                fixed (float* pp = p)
                fixed (float* gp = g)
                fixed (float* mp = ms)
                fixed (float* vp = vs)
                {
                    Vector<float> vlr = new Vector<float>(lr), vwd = new Vector<float>(wd), veps = new Vector<float>(eps);
                    Vector<float> vb1 = new Vector<float>(fb1), vb2 = new Vector<float>(fb2), vob1 = new Vector<float>(ob1), vob2 = new Vector<float>(ob2);
                    Vector<float> vc1 = new Vector<float>(c1), vc2 = new Vector<float>(c2), vlrwd = new Vector<float>(lr * wd);
                    for (; i + Vector<float>.Count <= p.Length; i += Vector<float>.Count)
                    {
                        var x = Vector.Load(pp + i);
                        var grad = decoupled ? Vector.Load(gp + i) : Vector.Load(gp + i) + vwd * x;
                        var m = vb1 * Vector.Load(mp + i) + vob1 * grad;
                        var v = vb2 * Vector.Load(vp + i) + vob2 * grad * grad;
                        m.Store(mp + i);
                        v.Store(vp + i);
                        Vector<float> mHat = m / vc1, vHat = v / vc2;
                        if (decoupled) x -= vlrwd * x;
                        (x - vlr * mHat / (Vector.SquareRoot(vHat) + veps)).Store(pp + i);
                    }
                }
            }
        for (; i < p.Length; i++)
        {
            float grad = decoupled ? g[i] : g[i] + wd * p[i];
            ms[i] = fb1 * ms[i] + ob1 * grad;
            vs[i] = fb2 * vs[i] + ob2 * grad * grad;
            float mHat = ms[i] / c1, vHat = vs[i] / c2;
            if (decoupled) p[i] -= lr * wd * p[i];
            p[i] -= lr * mHat / (MathF.Sqrt(vHat) + eps);
        }
    }
}
