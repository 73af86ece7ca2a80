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
        BeginStep();
        Apply(parameters, parameters, gradients, learningRate, 0);
        EndStep();
    }

    /// One step in pieces (threads may update disjoint ranges at once): BeginStep, ApplyRange over
    /// ranges that cover the vector once, EndStep. Every element gets the operations of Step.
    /// The state is kept twice: a step reads one copy and writes the other, which EndStep makes
    /// the state, so <see cref="UndoStep"/> can go back without a copy having been made.
    public void BeginStep() => Steps++;

    /// Updates elements [offset, offset + from.Length): reads the parameters from `from`, writes
    /// them to `to` (the same span or another vector's range), both those ranges of whole vectors.
    public void ApplyRange(ReadOnlySpan<float> from, Span<float> to, ReadOnlySpan<float> gradients, float learningRate, int offset)
    {
        if (offset < 0 || offset + from.Length > Length || gradients.Length != from.Length || to.Length != from.Length)
            throw new ArgumentException($"optimizer: range [{offset}, {offset + from.Length}) of {Length} with {to.Length} outputs and {gradients.Length} gradients");
        Apply(from, to, gradients, learningRate, offset);
    }

    /// The state the step wrote becomes the state.
    public void EndStep() => SwapState();

    /// Back to before the last step (valid until the next BeginStep): the state it read is the state again.
    public void UndoStep()
    {
        SwapState();
        Steps--;
    }

    protected abstract void SwapState();

    /// pIn, pOut and g are elements [offset, offset + pIn.Length) of the vectors (pIn and pOut may be
    /// the same); the state is read there in the current copy and written in the other.
    protected abstract void Apply(ReadOnlySpan<float> pIn, Span<float> pOut, ReadOnlySpan<float> g, float lr, int offset);

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

    protected override void SwapState() { }

    protected override void Apply(ReadOnlySpan<float> pIn, Span<float> pOut, ReadOnlySpan<float> g, float lr, int offset)
    {
        float wd = (float)Settings.WeightDecay;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            unsafe
            {
                fixed (float* pi = pIn)
                fixed (float* po = pOut)
                fixed (float* gp = g)
                {
                    Vector<float> vlr = new Vector<float>(lr), vwd = new Vector<float>(wd);
                    for (; i + Vector<float>.Count <= pIn.Length; i += Vector<float>.Count)
                    {
                        var x = Vector.Load(pi + i);
                        (x - vlr * (Vector.Load(gp + i) + vwd * x)).Store(po + i);
                    }
                }
            }
        for (; i < pIn.Length; i++) pOut[i] = pIn[i] - lr * (g[i] + wd * pIn[i]);
    }
}

/// v = mu * v + (g + wd * p); p -= lr * v, or with Nesterov p -= lr * (g + wd * p + mu * v).
public sealed class MomentumSgd : Optimizer
{
    float[] _velocity, _next;

    public MomentumSgd(OptimizerSettings s, int length) : base(s, length)
    {
        _velocity = new float[length];
        _next = new float[length];
    }

    public override IReadOnlyList<(string Name, float[] Values)> State => [("velocity", _velocity)];

    protected override void SwapState() => (_velocity, _next) = (_next, _velocity);

    protected override void Apply(ReadOnlySpan<float> pIn, Span<float> pOut, ReadOnlySpan<float> g, float lr, int offset)
    {
        float mu = (float)Settings.Momentum, wd = (float)Settings.WeightDecay;
        ReadOnlySpan<float> vIn = _velocity.AsSpan(offset, pIn.Length);
        Span<float> vOut = _next.AsSpan(offset, pIn.Length);
        bool nesterov = Settings.Nesterov;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            unsafe
            {
                fixed (float* pi = pIn)
                fixed (float* po = pOut)
                fixed (float* gp = g)
                fixed (float* vi = vIn)
                fixed (float* vo = vOut)
                {
                    Vector<float> vlr = new Vector<float>(lr), vwd = new Vector<float>(wd), vmu = new Vector<float>(mu);
                    for (; i + Vector<float>.Count <= pIn.Length; i += Vector<float>.Count)
                    {
                        var x = Vector.Load(pi + i);
                        var grad = Vector.Load(gp + i) + vwd * x;
                        var vel = vmu * Vector.Load(vi + i) + grad;
                        vel.Store(vo + i);
                        (x - (nesterov ? vlr * (grad + vmu * vel) : vlr * vel)).Store(po + i);
                    }
                }
            }
        for (; i < pIn.Length; i++)
        {
            float x = pIn[i], grad = g[i] + wd * x, vel = mu * vIn[i] + grad;
            vOut[i] = vel;
            pOut[i] = x - (nesterov ? lr * (grad + mu * vel) : lr * vel);
        }
    }
}

/// Adam with bias correction. "adam" adds wd * p to the gradient (L2); "adamw" decays the
/// weights directly (p -= lr * wd * p), decoupled from the adaptive step.
public sealed class Adam : Optimizer
{
    float[] _m, _v, _mNext, _vNext;

    public Adam(OptimizerSettings s, int length) : base(s, length)
    {
        _m = new float[length];
        _v = new float[length];
        _mNext = new float[length];
        _vNext = new float[length];
    }

    public override IReadOnlyList<(string Name, float[] Values)> State => [("m", _m), ("v", _v)];

    protected override void SwapState()
    {
        (_m, _mNext) = (_mNext, _m);
        (_v, _vNext) = (_vNext, _v);
    }

    protected override void Apply(ReadOnlySpan<float> pIn, Span<float> pOut, ReadOnlySpan<float> g, float lr, int offset)
    {
        double b1 = Settings.Beta1, b2 = Settings.Beta2;
        bool decoupled = Settings.Kind == OptimizerKind.AdamW;
        float wd = (float)Settings.WeightDecay, eps = (float)Settings.Epsilon;
        float c1 = (float)(1 - Math.Pow(b1, Steps)), c2 = (float)(1 - Math.Pow(b2, Steps));
        float fb1 = (float)b1, fb2 = (float)b2, ob1 = (float)(1 - b1), ob2 = (float)(1 - b2);
        int n = pIn.Length;
        ReadOnlySpan<float> mIn = _m.AsSpan(offset, n), vIn = _v.AsSpan(offset, n);
        Span<float> mOut = _mNext.AsSpan(offset, n), vOut = _vNext.AsSpan(offset, n);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            unsafe
            {
                fixed (float* pi = pIn)
                fixed (float* po = pOut)
                fixed (float* gp = g)
                fixed (float* mi = mIn)
                fixed (float* vi = vIn)
                fixed (float* mo = mOut)
                fixed (float* vo = vOut)
                {
                    Vector<float> vlr = new Vector<float>(lr), vwd = new Vector<float>(wd), veps = new Vector<float>(eps);
                    Vector<float> vb1 = new Vector<float>(fb1), vb2 = new Vector<float>(fb2), vob1 = new Vector<float>(ob1), vob2 = new Vector<float>(ob2);
                    Vector<float> vc1 = new Vector<float>(c1), vc2 = new Vector<float>(c2), vlrwd = new Vector<float>(lr * wd);
                    for (; i + Vector<float>.Count <= n; i += Vector<float>.Count)
                    {
                        var x = Vector.Load(pi + i);
                        var grad = decoupled ? Vector.Load(gp + i) : Vector.Load(gp + i) + vwd * x;
                        var m = vb1 * Vector.Load(mi + i) + vob1 * grad;
                        var v = vb2 * Vector.Load(vi + i) + vob2 * grad * grad;
                        m.Store(mo + i);
                        v.Store(vo + i);
                        Vector<float> mHat = m / vc1, vHat = v / vc2;
                        if (decoupled) x -= vlrwd * x;
                        (x - vlr * mHat / (Vector.SquareRoot(vHat) + veps)).Store(po + i);
                    }
                }
            }
        for (; i < n; i++)
        {
            float x = pIn[i];
            float grad = decoupled ? g[i] : g[i] + wd * x;
            float m = fb1 * mIn[i] + ob1 * grad, v = fb2 * vIn[i] + ob2 * grad * grad;
            mOut[i] = m;
            vOut[i] = v;
            float mHat = m / c1, vHat = v / c2;
            if (decoupled) x -= lr * wd * x;
            pOut[i] = x - lr * mHat / (MathF.Sqrt(vHat) + eps);
        }
    }
}
