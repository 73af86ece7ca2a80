using DistTrain.Cnn.Checkpoints;

namespace DistTrain.Cnn.Models;

/// Parameters for a model from a safetensors file written elsewhere (PyTorch's save_file of a
/// state_dict whose names are the model's: "conv1.weight", "bn1.running_mean", "dense2.bias",
/// "res4.shortcut.conv.weight"; `disttrain summary` lists them) or by DistTrain. F32, F16, BF16 and
/// F64 tensors are read; PyTorch's "*.num_batches_tracked" counters and a DistTrain checkpoint's
/// "optimizer.*" state are left out. Strict, like load_state_dict: every tensor of the model must
/// be there with its shape, and no other.
public static class ModelWeights
{
    /// The model's parameters from `path`; any mismatch is a CheckpointFormatException naming the file.
    public static float[] Load(string path, Model model)
    {
        var file = SafeTensorsFile.Read(path);
        var parameters = new float[model.ParameterCount];
        var wanted = model.Views.ToDictionary(v => v.Name);
        var unexpected = new List<string>();
        var seen = new HashSet<string>();
        foreach (var t in file.Tensors)
        {
            if (t.Name.StartsWith("optimizer.", StringComparison.Ordinal) || t.Name.EndsWith(".num_batches_tracked", StringComparison.Ordinal)) continue;
            if (!wanted.TryGetValue(t.Name, out var view)) { unexpected.Add(t.Name); continue; }
            if (!t.Shape.SequenceEqual(view.Shape))
                throw new CheckpointFormatException($"{path}: tensor '{t.Name}' has shape [{string.Join(",", t.Shape)}], model {model.Name} expects [{string.Join(",", view.Shape)}]");
            int bad = Array.FindIndex(t.Data, v => !float.IsFinite(v));
            if (bad >= 0) throw new CheckpointFormatException($"{path}: tensor '{t.Name}' holds {t.Data[bad]} at element {bad}; expected finite values");
            t.Data.CopyTo(parameters, view.Offset);
            seen.Add(t.Name);
        }
        var missing = model.Views.Where(v => !seen.Contains(v.Name)).Select(v => v.Name).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new CheckpointFormatException($"{path}: does not fit model {model.Name}: " + string.Join("; ", new[]
            {
                missing.Count > 0 ? $"missing {List(missing)}" : null,
                unexpected.Count > 0 ? $"unexpected {List(unexpected)}" : null,
            }.Where(s => s is not null)) + " (disttrain summary lists the model's layers; tensors are named LAYER.weight, LAYER.bias, ...)");
        return parameters;
    }

    static string List(List<string> names) =>
        string.Join(", ", names.Take(5).Select(n => $"'{n}'")) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");
}
