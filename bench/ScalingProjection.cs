namespace DistTrain.Bench;

/// Past this machine: the alpha-beta model of an all-reduce fitted to the measured ring, and the
/// step time and weak-scaling efficiency it projects for 2 to 128 workers (each with the measured
/// 1-thread compute of one worker and its own batch, as Horovod's ~90% at 128 servers is quoted).
static class ScalingProjection
{
    /// Per-hop latency alpha (s) and per-byte time beta (s/B) of T = 2(N-1) alpha + 2(N-1)/N S beta,
    /// fitted by least squares on relative error, so small and large payloads weigh the same.
    public sealed record Fit(double AlphaSeconds, double BetaSecondsPerByte, int Points, double WorstRelativeError);

    public static Fit? FitRing(IEnumerable<NetworkBench.AllReduceFigure> figures)
    {
        var points = figures.Where(f => f.Algorithm == "ring-tcp" && f.Processes >= 2 && f.LatencyMs > 0).ToList();
        if (points.Count < 2) return null;
        // Each point divided by its own time: minimise sum ((a x1 + b x2) / T - 1)^2.
        double s11 = 0, s12 = 0, s22 = 0, r1 = 0, r2 = 0;
        foreach (var f in points)
        {
            double t = f.LatencyMs / 1e3, x1 = 2.0 * (f.Processes - 1) / t, x2 = 2.0 * (f.Processes - 1) / f.Processes * f.PayloadBytes / t;
            s11 += x1 * x1; s12 += x1 * x2; s22 += x2 * x2; r1 += x1; r2 += x2;
        }
        double det = s11 * s22 - s12 * s12;
        if (det <= 0) return null;
        double alpha = (r1 * s22 - r2 * s12) / det, beta = (s11 * r2 - s12 * r1) / det;
        if (alpha <= 0 || beta <= 0) return null;
        double worst = points.Max(f => Math.Abs(Ring(f.Processes, f.PayloadBytes, alpha, beta) / (f.LatencyMs / 1e3) - 1));
        return new Fit(alpha, beta, points.Count, worst);
    }

    /// Ring: 2(N-1) latency terms, and each rank sends 2(N-1)/N of the vector.
    public static double Ring(int n, double bytes, double alpha, double beta) => 2.0 * (n - 1) * alpha + 2.0 * (n - 1) / n * bytes * beta;

    /// A pipelined pair of binary trees (reduce, then broadcast): 2 log2 N latency terms and about
    /// twice the vector per rank, whatever N. Better than the ring once the latency term dominates.
    public static double Tree(int n, double bytes, double alpha, double beta) => 2.0 * Math.Ceiling(Math.Log2(n)) * alpha + 2.0 * bytes * beta;

    public sealed record Row(int Workers, double ComputeMs, double RingMs, double TreeMs, double RingEfficiency, double BestEfficiency, string Best);

    /// Weak scaling: every worker computes `batch` images at `imagesPerSecond`, then the gradient of
    /// `gradientBytes` is all-reduced with nothing overlapped (a bound from below: the overlap with
    /// the backward pass hides part of it).
    public static IReadOnlyList<Row> Project(double imagesPerSecond, int batch, double gradientBytes, Fit fit)
    {
        double compute = batch / imagesPerSecond;
        var rows = new List<Row>();
        foreach (int n in new[] { 2, 4, 8, 16, 32, 64, 128 })
        {
            double ring = Ring(n, gradientBytes, fit.AlphaSeconds, fit.BetaSecondsPerByte);
            double tree = Tree(n, gradientBytes, fit.AlphaSeconds, fit.BetaSecondsPerByte);
            double best = Math.Min(ring, tree);
            rows.Add(new Row(n, Math.Round(compute * 1e3, 2), Math.Round(ring * 1e3, 2), Math.Round(tree * 1e3, 2),
                Math.Round(compute / (compute + ring), 3), Math.Round(compute / (compute + best), 3), ring <= tree ? "ring" : "tree"));
        }
        return rows;
    }
}
