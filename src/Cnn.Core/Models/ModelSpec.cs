using System.Text.Json;
using DistTrain.Cnn.Data;
using System.Text.Json.Serialization;

namespace DistTrain.Cnn.Models;

/// One entry of a model's layer list, as written in a model JSON file:
/// {"type": "conv2d", "filters": 6, "kernel": 5, "padding": 2}. Unused fields stay null.
public sealed record LayerSpec
{
    public required string Type { get; init; }
    public int? Filters { get; init; }
    public int? Kernel { get; init; }
    public int? Stride { get; init; }
    public int? Padding { get; init; }
    public int? Size { get; init; }
    public int? Units { get; init; }
    public double? Rate { get; init; }
    /// "he" or "xavier"; by default He before ReLU, Xavier otherwise.
    public string? Init { get; init; }
}

/// A model as data: its name, the shape of one input sample and its layers. This is what a
/// custom model file holds and what a checkpoint records, so any process can rebuild the model.
public sealed record ModelSpec
{
    public required string Name { get; init; }
    /// [channels, height, width]
    public required int[] Input { get; init; }
    public required IReadOnlyList<LayerSpec> Layers { get; init; }

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// Parses a model description; every problem becomes one ArgumentException line naming `source`.
    public static ModelSpec FromJson(string json, string source)
    {
        ModelSpec? spec;
        try { spec = JsonSerializer.Deserialize<ModelSpec>(json, Json); }
        catch (JsonException e) { throw new ArgumentException($"{source}: not a valid model description: {OneLine(e.Message)}"); }
        if (spec is null) throw new ArgumentException($"{source}: not a valid model description: empty");
        if (spec.Input is not { Length: 3 } || spec.Input.Any(d => d < 1))
            throw new ArgumentException($"{source}: \"input\" must be [channels, height, width] with positive sizes");
        if (spec.Layers is null) throw new ArgumentException($"{source}: \"layers\" must be a list of layers, got null");
        if (spec.Layers.Count == 0) throw new ArgumentException($"{source}: \"layers\" is empty");
        int empty = spec.Layers.ToList().FindIndex(l => l is null);   // a missing "type" is the deserializer's error
        if (empty >= 0) throw new ArgumentException($"{source}: layer {empty + 1} is null; expected an object such as {{\"type\": \"relu\"}}");
        // Built to check the shapes, not allocated: a model too big for memory is the budget's to refuse.
        try { Model.Measure(spec); }
        catch (ArgumentException e) { throw new ArgumentException($"{source}: {e.Message}"); }
        return spec;
    }

    public static ModelSpec FromFile(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: model file not found");
        return FromJson(File.ReadAllText(path), path);
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ");
}

/// The built-in models of DESIGN.md.
public static class Presets
{
    public static readonly IReadOnlyList<string> Names = ["lenet5", "mnist-cnn", "resnet20"];

    public static ModelSpec LeNet5 => new()
    {
        Name = "lenet5",
        Input = [1, 28, 28],
        Layers =
        [
            new() { Type = "conv2d", Filters = 6, Kernel = 5, Padding = 2 }, new() { Type = "relu" },
            new() { Type = "maxpool2d", Size = 2 },
            new() { Type = "conv2d", Filters = 16, Kernel = 5 }, new() { Type = "relu" },
            new() { Type = "maxpool2d", Size = 2 },
            new() { Type = "dense", Units = 120 }, new() { Type = "relu" },
            new() { Type = "dense", Units = 84 }, new() { Type = "relu" },
            new() { Type = "dense", Units = 10 },
        ],
    };

    public static ModelSpec MnistCnn => new()
    {
        Name = "mnist-cnn",
        Input = [1, 28, 28],
        Layers =
        [
            new() { Type = "conv2d", Filters = 32, Kernel = 3 }, new() { Type = "relu" },
            new() { Type = "conv2d", Filters = 64, Kernel = 3 }, new() { Type = "relu" },
            new() { Type = "maxpool2d", Size = 2 },
            new() { Type = "dropout", Rate = 0.25 },
            new() { Type = "dense", Units = 128 }, new() { Type = "relu" },
            new() { Type = "dropout", Rate = 0.5 },
            new() { Type = "dense", Units = 10 },
        ],
    };

    /// ResNet-20 of the ResNet paper's CIFAR experiments (He et al. 2016, section 4.2): a 3x3
    /// convolution of 16 filters, then three stages of three residual blocks of 16, 32 and 64
    /// filters (the first block of the second and third halving the size, with a projection
    /// shortcut), global average pooling and one dense layer: 20 layers with weights. Any input
    /// size and channel count (Fit gives it the data's).
    public static ModelSpec ResNet20 => new()
    {
        Name = "resnet20",
        Input = [3, 32, 32],
        Layers =
        [
            new() { Type = "conv2d", Filters = 16, Kernel = 3, Padding = 1 }, new() { Type = "batchnorm" }, new() { Type = "relu" },
            .. new[] { (16, 1), (16, 1), (16, 1), (32, 2), (32, 1), (32, 1), (64, 2), (64, 1), (64, 1) }
                .Select(b => new LayerSpec { Type = "residual", Filters = b.Item1, Stride = b.Item2 }),
            new() { Type = "globalavgpool" },
            new() { Type = "dense", Units = 10 },
        ],
    };

    /// The optimizer and peak learning rate each preset trains best with in our runs (batch 64,
    /// cosine with 5% warm-up): LeNet-5 reaches 98.8-98.9% in 2 epochs with momentum SGD; mnist-cnn,
    /// with its dropout, reaches 98.5% in 1 epoch only with Adam. Custom models use the first.
    /// ResNet-20 follows the paper's recipe (momentum SGD, weight decay 1e-4) with the learning rate
    /// scaled to the default batch of 64 (0.1 at 128) and a cosine schedule.
    public static (string Optimizer, double LearningRate, double WeightDecay) Recipe(string name) => name switch
    {
        "mnist-cnn" => ("adam", 0.002, 0),
        "resnet20" => ("momentum", 0.05, 1e-4),
        _ => ("momentum", 0.03, 0),
    };

    public static bool IsPreset(string name) => Names.Contains(name);

    /// The augmentation of a preset's recipe for images of `channels` x `height`: ResNet-20 on colour
    /// images takes the paper's (a crop with H/8 pixels of padding, 4 on 32 x 32, and a flip); on
    /// one-channel images (digits, which a flip would spoil) and for the other presets, none.
    public static Augmentation DefaultAugmentation(string name, int channels, int height) =>
        name == "resnet20" && channels == 3 ? new Augmentation(Math.Max(1, height / 8), Flip: true) : Augmentation.None;

    /// A preset for samples of shape `input` (C, H, W) in `classes` classes: the first layer takes
    /// C channels and the dense layers follow the shapes by themselves; the last layer gets one
    /// unit per class. MNIST's shape and 10 classes leave the preset as it is.
    public static ModelSpec Fit(ModelSpec preset, int[] input, int classes) => preset with
    {
        Input = input,
        Layers = [.. preset.Layers.Take(preset.Layers.Count - 1), preset.Layers[^1] with { Units = classes }],
    };

    /// A preset name or a path to a model JSON file.
    public static ModelSpec Resolve(string nameOrFile) => nameOrFile switch
    {
        "lenet5" => LeNet5,
        "mnist-cnn" => MnistCnn,
        "resnet20" => ResNet20,
        _ when nameOrFile.EndsWith(".json", StringComparison.OrdinalIgnoreCase) => ModelSpec.FromFile(nameOrFile),
        _ => throw new ArgumentException($"--model: expected lenet5, mnist-cnn, resnet20 or a FILE.json, got '{nameOrFile}'"),
    };
}
