using DistTrain.Cnn.Data;

namespace DistTrain.TestSupport;

/// Dataset folders in the binary CIFAR formats, written from 3 x 32 x 32 datasets, so the command
/// line and worker processes read them as they would read the real CIFAR-10 or CIFAR-100.
public static class CifarFolder
{
    /// dir with CIFAR-10's six files (the training samples cut into five batches in order) or
    /// CIFAR-100's two; `data` must hold 3 x 32 x 32 samples.
    public static string Write(string dir, DatasetFolder data, CifarFile.Layout layout)
    {
        if (data.Train.SampleSize != CifarFile.ImageBytes) throw new ArgumentException($"CIFAR samples are 3x32x32, {data.Name} has {data.Train.ShapeText}");
        Directory.CreateDirectory(dir);
        var train = data.Train;
        if (layout == CifarFile.Cifar10)
        {
            int batches = CifarFile.Cifar10Train.Count;
            for (int b = 0; b < batches; b++)
            {
                int start = train.Count * b / batches, end = train.Count * (b + 1) / batches;
                CifarFile.Write(Path.Combine(dir, CifarFile.Cifar10Train[b]), layout,
                    train.Pixels[(start * CifarFile.ImageBytes)..(end * CifarFile.ImageBytes)], train.Labels[start..end]);
            }
            CifarFile.Write(Path.Combine(dir, CifarFile.Cifar10Test), layout, data.Test.Pixels, data.Test.Labels);
        }
        else
        {
            CifarFile.Write(Path.Combine(dir, CifarFile.Cifar100Train), layout, train.Pixels, train.Labels);
            CifarFile.Write(Path.Combine(dir, CifarFile.Cifar100Test), layout, data.Test.Pixels, data.Test.Labels);
        }
        return dir;
    }

    /// A learnable synthetic colour dataset of CIFAR's shape.
    public static DatasetFolder Synthetic(int train, int test, int seed, int classes = 10) =>
        DatasetFolder.Synthetic(train, test, seed, height: 32, width: 32, classes: classes, channels: 3);
}
