using DistTrain.Cnn.Data;
using DistTrain.Cnn.Layers;

namespace DistTrain.Cnn.Inference;

/// Images to classify, as one unlabelled <see cref="Dataset"/> in a model's input shape, normalised
/// with the checkpoint's statistics, and a name for each (the file, or FILE[i] for the i-th image
/// of an IDX file).
public sealed record PredictInputs(Dataset Images, IReadOnlyList<string> Names)
{
    /// Reads PNG, JPEG and IDX image files. An image's channels are converted to the model's (colour
    /// to gray by ITU-R BT.601 luma, gray to colour by repeating it); its size must be the model's.
    /// Every problem is one DataFormatException naming the file and what was expected.
    public static PredictInputs FromFiles(IReadOnlyList<string> paths, SampleShape input, InferenceInfo info)
    {
        if (input.C is not (1 or 3)) throw new DataFormatException($"the model takes {input.C} channels; images can be given to models of 1 (gray) or 3 (RGB)");
        int plane = input.H * input.W, size = input.C * plane;
        var pixels = new List<byte[]>();
        var names = new List<string>();
        foreach (var path in paths)
        {
            if (Directory.Exists(path)) throw new DataFormatException($"{path}: a folder; give image files, or a dataset folder with --data");
            var head = DataFiles.ReadHead(path, 4);
            if (head.Length >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 8 && head[3] == 3)
            {
                var idx = IdxFile.ReadImages(path);
                if (input.C != 1) throw new DataFormatException($"{path}: IDX images have 1 channel, the model takes {input.C}");
                CheckSize(path, idx.Cols, idx.Rows, input);
                for (int i = 0; i < idx.Count; i++)
                {
                    pixels.Add(idx.Pixels.AsSpan(i * plane, plane).ToArray());
                    names.Add($"{path}[{i}]");
                }
                continue;
            }
            var image = ImageFolder.DecodeFile(path);
            CheckSize(path, image.Width, image.Height, input);
            var sample = new byte[size];
            if (input.C == 3)
                for (int c = 0; c < 3; c++) image.Planes[image.Gray ? 0 : c].CopyTo(sample.AsSpan(c * plane, plane));
            else if (image.Gray) image.Planes[0].CopyTo(sample, 0);
            else
                for (int i = 0; i < plane; i++)
                    sample[i] = (byte)Math.Round(0.299 * image.Planes[0][i] + 0.587 * image.Planes[1][i] + 0.114 * image.Planes[2][i]);
            pixels.Add(sample);
            names.Add(path);
        }
        return new PredictInputs(Join(pixels, size, input, info, "images"), names);
    }

    /// The test split of a dataset folder (labels kept), which must have the model's shape.
    public static PredictInputs FromTestSplit(DatasetFolder data, SampleShape input, InferenceInfo info)
    {
        var test = data.Test;
        if (test.Channels != input.C || test.Height != input.H || test.Width != input.W)
            throw new DataFormatException($"{data.Name}: images are {test.ShapeText}, the model takes {input.C}x{input.H}x{input.W}");
        var images = new Dataset($"{data.Name}/test", test.Channels, test.Height, test.Width, test.Classes,
                                 test.Pixels.ToArray(), test.Labels.ToArray(), [.. info.Mean], [.. info.Std]);
        return new PredictInputs(images, [.. Enumerable.Range(0, test.Count).Select(i => $"{data.Name}/test[{i}]")]);
    }

    static void CheckSize(string path, int width, int height, SampleShape input)
    {
        if (width != input.W || height != input.H)
            throw new DataFormatException($"{path}: image is {width}x{height} pixels, the model takes {input.W}x{input.H} (resize it first)");
    }

    static Dataset Join(List<byte[]> samples, int size, SampleShape input, InferenceInfo info, string name)
    {
        if (samples.Count == 0) throw new DataFormatException("no images given");
        var all = new byte[(long)samples.Count * size];
        for (int i = 0; i < samples.Count; i++) samples[i].CopyTo(all, (long)i * size);
        return new Dataset(name, input.C, input.H, input.W, Math.Max(1, info.Classes.Count), all, new byte[samples.Count], [.. info.Mean], [.. info.Std]);
    }
}
