namespace DistTrain.Cnn;

/// A seeded generator whose stream depends only on its seed, never on the runtime or on which
/// worker runs it. Streams for (seed, epoch, step, sample, ...) come from <see cref="Derive(ulong, ulong)"/>,
/// so any process can reproduce the randomness of any sample (DESIGN.md, "Randomness").
public struct DeterministicRandom
{
    ulong _state;
    double _spareGaussian;
    bool _hasSpare;

    public DeterministicRandom(ulong seed)
    {
        _state = seed;
        _spareGaussian = 0;
        _hasSpare = false;
    }

    /// SplitMix64's finaliser: a bijective mix with good avalanche, used both as the
    /// generator step and to derive independent stream seeds.
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static ulong Derive(ulong a, ulong b) => Mix(Mix(a + 0x9E3779B97F4A7C15UL) ^ (b + 0x632BE59BD9B4E019UL));
    public static ulong Derive(ulong a, ulong b, ulong c) => Derive(Derive(a, b), c);
    public static ulong Derive(ulong a, ulong b, ulong c, ulong d) => Derive(Derive(Derive(a, b), c), d);

    public ulong NextUInt64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// Uniform in [0, 1) with 24 random bits, exactly representable as float.
    public float NextFloat() => (NextUInt64() >> 40) * (1.0f / (1 << 24));

    /// Uniform in [0, 1) with 53 random bits.
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// Uniform integer in [0, bound), unbiased (rejection sampling).
    public int NextInt(int bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound));
        ulong limit = ulong.MaxValue - ulong.MaxValue % (ulong)bound;
        ulong r;
        do { r = NextUInt64(); } while (r >= limit);
        return (int)(r % (ulong)bound);
    }

    /// Standard normal by Box-Muller, in double precision for a stable tail.
    public double NextGaussian()
    {
        if (_hasSpare) { _hasSpare = false; return _spareGaussian; }
        double u1;
        do { u1 = NextDouble(); } while (u1 <= double.Epsilon);
        double u2 = NextDouble();
        double radius = Math.Sqrt(-2.0 * Math.Log(u1));
        _spareGaussian = radius * Math.Sin(2 * Math.PI * u2);
        _hasSpare = true;
        return radius * Math.Cos(2 * Math.PI * u2);
    }

    /// A uniform float in [0, 1) that is a pure function of a key: used for dropout masks so a
    /// sample's mask depends on (seed, epoch, step, sample, element) only.
    public static float HashToUnitFloat(ulong key) => (Mix(key) >> 40) * (1.0f / (1 << 24));
}
