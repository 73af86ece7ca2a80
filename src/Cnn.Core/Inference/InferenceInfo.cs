using System.Globalization;
using System.Text.Json;
using DistTrain.Cnn.Checkpoints;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Inference;

/// What classifying a raw image needs beyond the model: the per-channel mean and standard deviation
/// the training data was normalised with (pixel / 255 - mean) / std, and the classes' names in label
/// order. Checkpoints carry it (metadata "mean", "std", "classes"), and so do exported ONNX models.
public sealed record InferenceInfo(IReadOnlyList<float> Mean, IReadOnlyList<float> Std, IReadOnlyList<string> Classes)
{
    /// The training split's statistics, and the folder's class names when it has one per output
    /// (an image folder's sub-folders), else the label numbers "0", "1", ...
    public static InferenceInfo Of(DatasetFolder data, int outputs) => new(
        [.. data.Train.Mean], [.. data.Train.Std],
        data.ClassNames.Count == outputs ? [.. data.ClassNames] : [.. Enumerable.Range(0, outputs).Select(i => i.ToString(CultureInfo.InvariantCulture))]);

    public void AddTo(IDictionary<string, string> metadata)
    {
        metadata["mean"] = JsonSerializer.Serialize(Mean);
        metadata["std"] = JsonSerializer.Serialize(Std);
        metadata["classes"] = JsonSerializer.Serialize(Classes);
    }

    /// The record in `metadata`, checked against the model it goes with; null when the checkpoint
    /// predates it (no "mean" key). Anything else wrong is a CheckpointFormatException naming `path`.
    public static InferenceInfo? From(IReadOnlyDictionary<string, string> metadata, Model model, string path)
    {
        if (!metadata.ContainsKey("mean")) return null;
        T Parse<T>(string key) where T : class
        {
            try { return metadata.TryGetValue(key, out var text) ? JsonSerializer.Deserialize<T>(text) ?? throw new JsonException("null") : throw new JsonException("missing"); }
            catch (JsonException) { throw new CheckpointFormatException($"{path}: metadata '{key}' is missing or not a JSON array"); }
        }
        var mean = Parse<float[]>("mean");
        var std = Parse<float[]>("std");
        var classes = Parse<string[]>("classes");
        int channels = model.InputShape.C, outputs = model.OutputShape.Size;
        if (mean.Length != channels || std.Length != channels)
            throw new CheckpointFormatException($"{path}: {mean.Length} means and {std.Length} standard deviations for a model of {channels} input channel(s)");
        if (mean.Any(m => !float.IsFinite(m)) || std.Any(s => !float.IsFinite(s) || s <= 0))
            throw new CheckpointFormatException($"{path}: the normalisation must be finite with positive standard deviations");
        if (classes.Length != outputs || classes.Any(c => c is null))
            throw new CheckpointFormatException($"{path}: {classes.Length} class names for a model of {outputs} outputs");
        return new InferenceInfo(mean, std, classes);
    }
}
