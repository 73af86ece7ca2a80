using System.Globalization;
using System.Text.Json;
using DistTrain.Cnn.Checkpoints;
using DistTrain.Cnn.Inference;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;

namespace DistTrain.Cnn.Training;

/// A saved point of training: parameters (one tensor per named view of the flat vector),
/// optimizer state ("optimizer.NAME", flat) and the metadata needed to rebuild and continue.
public sealed record TrainingCheckpoint(
    Model Model, Optimizer? Optimizer, long Step, int Epoch, ulong Seed, int GlobalBatch, int MicroBatch,
    string Dataset, string DatasetSha256, string Path, string Augment = "none", InferenceInfo? Inference = null)
{
    public const string Format = "disttrain-checkpoint-1";

    /// What classifying raw images needs, or one line saying the checkpoint is too old to have it.
    public InferenceInfo RequireInference() => Inference ?? throw new CheckpointFormatException(
        $"{Path}: the checkpoint does not record the normalisation and class names (written before predict and export existed); train again to use it");

    public static void Save(string path, Model model, Optimizer optimizer, long step, int epoch, ulong seed,
                            int globalBatch, int microBatch, string dataset, string datasetSha256, string augment = "none",
                            InferenceInfo? inference = null)
    {
        var tensors = new List<(string, int[], ReadOnlyMemory<float>)>();
        foreach (var v in model.Views) tensors.Add((v.Name, v.Shape, model.Parameters.AsMemory(v.Offset, v.Length)));
        foreach (var (name, values) in optimizer.State) tensors.Add(($"optimizer.{name}", [values.Length], values));
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["step"] = step.ToString(CultureInfo.InvariantCulture),
            ["epoch"] = epoch.ToString(CultureInfo.InvariantCulture),
            ["model"] = model.Spec.ToJson(),
            ["optimizer"] = JsonSerializer.Serialize(optimizer.Settings),
            ["optimizer_steps"] = optimizer.Steps.ToString(CultureInfo.InvariantCulture),
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["global_batch"] = globalBatch.ToString(CultureInfo.InvariantCulture),
            ["micro_batch"] = microBatch.ToString(CultureInfo.InvariantCulture),
            ["dataset"] = dataset,
            ["dataset_sha256"] = datasetSha256,
            ["augment"] = augment,
            ["parameter_sha256"] = ParameterHash.Sha256Hex(model.Parameters),
            ["tensors_sha256"] = ContentHash(tensors.Select(t => t.Item3)),
        };
        inference?.AddTo(meta);
        SafeTensorsFile.Write(path, tensors, meta);
    }

    /// SHA-256 over every tensor's bytes in file order: detects corruption anywhere in the data.
    static string ContentHash(IEnumerable<ReadOnlyMemory<float>> tensors)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var t in tensors) sha.AppendData(ParameterHash.LittleEndianBytes(t.Span));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// Loads and checks a checkpoint; any problem is a CheckpointFormatException naming the file.
    public static TrainingCheckpoint Load(string path)
    {
        var file = SafeTensorsFile.Read(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v)
            ? v : throw new CheckpointFormatException($"{path}: metadata has no '{key}'");
        T Parse<T>(string key, Func<string, T?> parse) where T : struct =>
            parse(Meta(key)) ?? throw new CheckpointFormatException($"{path}: metadata '{key}' is not valid: '{Meta(key)}'");

        if (Meta("format") != Format) throw new CheckpointFormatException($"{path}: expected format {Format}, found '{Meta("format")}'");
        if (ContentHash(file.Tensors.Select(t => (ReadOnlyMemory<float>)t.Data)) != Meta("tensors_sha256"))
            throw new CheckpointFormatException($"{path}: tensor data does not match its recorded SHA-256 (file corrupted)");
        ModelSpec spec;
        try { spec = ModelSpec.FromJson(Meta("model"), $"{path} (model)"); }
        catch (ArgumentException e) { throw new CheckpointFormatException(e.Message); }
        // The description is outside the tensors' hash: checked against them before a model of
        // that size is allocated (an edited or broken one could ask for gigabytes).
        long described = Models.Model.Measure(spec).Parameters;
        long held = file.Tensors.Where(t => !t.Name.StartsWith("optimizer.", StringComparison.Ordinal)).Sum(t => (long)t.Data.Length);
        if (described != held)
            throw new CheckpointFormatException($"{path}: its model has {described:N0} parameters, the file's tensors hold {held:N0}");
        var model = Models.Model.Create(spec);
        foreach (var v in model.Views)
        {
            var t = file.Contains(v.Name) ? file[v.Name] : throw new CheckpointFormatException($"{path}: no tensor '{v.Name}' for model {spec.Name}");
            if (!t.Shape.SequenceEqual(v.Shape))
                throw new CheckpointFormatException($"{path}: tensor '{v.Name}' has shape [{string.Join(",", t.Shape)}], model expects [{string.Join(",", v.Shape)}]");
            t.Data.CopyTo(model.Parameters.AsSpan(v.Offset, v.Length));
        }

        OptimizerSettings? settings;
        try { settings = JsonSerializer.Deserialize<OptimizerSettings>(Meta("optimizer")); }
        catch (JsonException) { settings = null; }
        if (settings is null) throw new CheckpointFormatException($"{path}: metadata 'optimizer' is not valid");
        Optimizer optimizer;
        try { optimizer = Optim.Optimizer.Create(settings, model.ParameterCount); }
        catch (ArgumentException e) { throw new CheckpointFormatException($"{path}: {e.Message}"); }
        foreach (var (name, values) in optimizer.State)
        {
            var t = file.Contains($"optimizer.{name}") ? file[$"optimizer.{name}"]
                : throw new CheckpointFormatException($"{path}: no tensor 'optimizer.{name}' for optimizer {settings.Kind.Name()}");
            if (t.Data.Length != values.Length)
                throw new CheckpointFormatException($"{path}: tensor 'optimizer.{name}' has {t.Data.Length} values, expected {values.Length}");
            t.Data.CopyTo(values, 0);
        }
        optimizer.Steps = Parse("optimizer_steps", s => long.TryParse(s, CultureInfo.InvariantCulture, out var x) ? x : (long?)null);


        return new TrainingCheckpoint(model, optimizer,
            Parse("step", s => long.TryParse(s, CultureInfo.InvariantCulture, out var x) && x >= 0 ? x : (long?)null),
            Parse("epoch", s => int.TryParse(s, CultureInfo.InvariantCulture, out var x) && x >= 0 ? x : (int?)null),
            Parse("seed", s => ulong.TryParse(s, CultureInfo.InvariantCulture, out var x) ? x : (ulong?)null),
            Parse("global_batch", s => int.TryParse(s, CultureInfo.InvariantCulture, out var x) && x > 0 ? x : (int?)null),
            Parse("micro_batch", s => int.TryParse(s, CultureInfo.InvariantCulture, out var x) && x > 0 ? x : (int?)null),
            Meta("dataset"), Meta("dataset_sha256"), path,
            // Checkpoints from before augmentation existed trained without it.
            file.Metadata.TryGetValue("augment", out var augment) ? augment : "none",
            // Checkpoints from before predict existed do not record the normalisation.
            InferenceInfo.From(file.Metadata, model, path));
    }
}
