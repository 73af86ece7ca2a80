using System.Globalization;

namespace DistTrain.Cnn.Data;

/// Training-time augmentation, drawn from (seed, epoch, sample index) only, so that a sample
/// looks the same whichever worker, thread or row of a shipped batch gathers it (invariant 3):
/// a random crop of the image padded by CropPadding pixels of value 0 on every side (as
/// torchvision's RandomCrop(size, padding) pads), that is a shift by dy, dx in [-P, P], then a
/// horizontal flip with probability 1/2. Evaluation never augments.
public sealed record Augmentation(int CropPadding, bool Flip)
{
    public static readonly Augmentation None = new(0, false);

    public bool IsNone => CropPadding == 0 && !Flip;

    /// Written as --augment takes it: "none", "flip", "crop:P" or "crop:P,flip".
    public override string ToString() =>
        IsNone ? "none" : string.Join(",", new[] { CropPadding > 0 ? $"crop:{CropPadding}" : null, Flip ? "flip" : null }.Where(p => p is not null));

    /// Parses ToString's form; ArgumentException (one line) for anything else.
    public static Augmentation Parse(string spec)
    {
        const string Expected = "expected none, flip, crop:P or crop:P,flip (P: padding in pixels, e.g. crop:4,flip for CIFAR)";
        if (spec.Trim() == "none") return None;
        int padding = 0;
        bool flip = false;
        foreach (var raw in spec.Split(','))
        {
            var part = raw.Trim();
            if (part == "flip" && !flip) flip = true;
            else if (part.StartsWith("crop:", StringComparison.Ordinal) && padding == 0
                     && int.TryParse(part.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int p) && p is >= 1 and <= 64)
                padding = p;
            else throw new ArgumentException($"--augment: '{spec}': {Expected}");
        }
        return new Augmentation(padding, flip);
    }

    /// Why this augmentation cannot apply to images of height x width, or null.
    public string? Unfit(int height, int width) =>
        CropPadding >= Math.Min(height, width) ? $"--augment {this}: a padding of {CropPadding} pixels would shift {height}x{width} images out of view; expected below {Math.Min(height, width)}" : null;

    /// The shift (a source pixel (y + Dy, x + Dx) for output (y, x), before the flip) and flip of
    /// sample `id` in `epoch`.
    public (int Dy, int Dx, bool Flip) Draw(ulong seed, int epoch, int id)
    {
        var rng = new DeterministicRandom(DeterministicRandom.Derive(seed, (ulong)epoch, (ulong)id, Salt));
        int span = 2 * CropPadding + 1;
        int dy = CropPadding > 0 ? rng.NextInt(span) - CropPadding : 0;
        int dx = CropPadding > 0 ? rng.NextInt(span) - CropPadding : 0;
        bool flip = Flip && rng.NextInt(2) == 1;
        return (dy, dx, flip);
    }

    const ulong Salt = 0xA06_3E47;
}
