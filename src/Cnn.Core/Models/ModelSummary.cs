using System.Globalization;
using System.Text;
using DistTrain.Cnn.Layers;

namespace DistTrain.Cnn.Models;

/// A model's layers as a table: output shape, parameters and forward FLOPs per image (2 per
/// multiply-add of the convolutions and dense layers; element-wise layers are not counted, as in
/// the usual tables).
public static class ModelSummary
{
    public sealed record Row(string Name, string Type, SampleShape Output, int Parameters, long Flops);

    public static IReadOnlyList<Row> Rows(Model model) =>
        [.. model.Layers.Select(l => new Row(l.Name, Describe(l), l.OutputShape, l.ParameterCount, 2 * MultiplyAdds(l)))];

    public static long MultiplyAdds(Layer layer) => layer switch
    {
        Conv2D c => (long)c.OutputShape.Size * c.InputShape.C * c.Kernel * c.Kernel,
        Dense d => (long)d.InputShape.Size * d.OutFeatures,
        ResidualBlock r => MultiplyAdds(r.Parts.Conv1) + MultiplyAdds(r.Parts.Conv2) + (r.Parts.ShortcutConv is { } s ? MultiplyAdds(s) : 0),
        _ => 0,
    };

    static string Describe(Layer layer) => layer switch
    {
        Conv2D c => $"conv2d {c.OutChannels}x{c.Kernel}x{c.Kernel}" + (c.Stride != 1 ? $" /{c.Stride}" : "") + (c.Padding != 0 ? $" pad {c.Padding}" : ""),
        Dense d => $"dense {d.OutFeatures}",
        MaxPool2D p => $"maxpool {p.Size}x{p.Size}" + (p.Stride != p.Size ? $" /{p.Stride}" : ""),
        AvgPool2D p => $"avgpool {p.Size}x{p.Size}" + (p.Stride != p.Size ? $" /{p.Stride}" : ""),
        Dropout d => $"dropout {d.Rate.ToString(CultureInfo.InvariantCulture)}",
        ResidualBlock r => $"residual {r.Filters}" + (r.Stride != 1 ? $" /{r.Stride}" : "") + (r.Projects ? ", projection" : ""),
        BatchNorm => "batchnorm",
        GlobalAvgPool => "global avg pool",
        _ => layer.GetType().Name.ToLowerInvariant(),
    };

    /// "lenet5: 1x28x28 -> 10, 61,706 parameters, 0.85 MFLOPs per image (forward)".
    public static string OneLine(Model model) =>
        $"model {model.Name}: {Shape(model.InputShape)} -> {model.OutputShape.Size}, {model.ParameterCount.ToString("N0", CultureInfo.InvariantCulture)} parameters, " +
        $"{Mega(Rows(model).Sum(r => r.Flops))} MFLOPs per image (forward), {model.Layers.Count} layers";

    public static string Table(Model model)
    {
        var rows = Rows(model);
        var text = new StringBuilder();
        var lines = new List<string[]> { new[] { "layer", "type", "output", "parameters", "MFLOPs" } };
        lines.Add(["input", "", Shape(model.InputShape), "", ""]);
        lines.AddRange(rows.Select(r => new[] { r.Name, r.Type, Shape(r.Output), r.Parameters.ToString("N0", CultureInfo.InvariantCulture), r.Flops > 0 ? Mega(r.Flops) : "" }));
        lines.Add(["total", "", "", model.ParameterCount.ToString("N0", CultureInfo.InvariantCulture), Mega(rows.Sum(r => r.Flops))]);
        var widths = Enumerable.Range(0, 5).Select(i => lines.Max(l => l[i].Length)).ToArray();
        foreach (var l in lines)
            text.AppendLine(string.Join("  ", l.Select((cell, i) => i >= 3 ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]))).TrimEnd());
        return text.ToString();
    }

    static string Shape(SampleShape s) => s.H == 1 && s.W == 1 ? $"{s.C}" : $"{s.C}x{s.H}x{s.W}";
    static string Mega(long flops) => (flops / 1e6).ToString(flops < 10_000_000 ? "F3" : "F1", CultureInfo.InvariantCulture);
}
