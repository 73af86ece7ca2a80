using System.Security.Cryptography;

namespace DistTrain.Cnn.Data;

/// The train and test splits of one dataset folder and the folder's identity: the SHA-256 of
/// its four IDX files concatenated in a fixed order.
public sealed record DatasetFolder(string Name, Dataset Train, Dataset Test, string Sha256)
{
    public static readonly IReadOnlyList<string> FileNames =
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    public static DatasetFolder Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new DataFormatException($"{dir}: dataset folder not found (run deploy/fetch-mnist.sh, or pass --data DIR)");
        string name = new DirectoryInfo(dir).Name;
        string P(int i) => Path.Combine(dir, FileNames[i]);
        var trainImages = IdxFile.ReadImages(P(0));
        var trainLabels = IdxFile.ReadLabels(P(1));
        var testImages = IdxFile.ReadImages(P(2));
        var testLabels = IdxFile.ReadLabels(P(3));
        CheckPair(P(0), trainImages, P(1), trainLabels);
        CheckPair(P(2), testImages, P(3), testLabels);
        if (testImages.Rows != trainImages.Rows || testImages.Cols != trainImages.Cols)
            throw new DataFormatException($"{P(2)}: images are {testImages.Rows}x{testImages.Cols}, but {P(0)} has {trainImages.Rows}x{trainImages.Cols}");

        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 0; i < 4; i++) sha.AppendData(File.ReadAllBytes(P(i)));
        var (mean, std) = Dataset.Statistics(trainImages.Pixels);
        int classes = Math.Max(10, Math.Max(trainLabels.DefaultIfEmpty().Max(), testLabels.DefaultIfEmpty().Max()) + 1);
        return new DatasetFolder(name,
            new Dataset($"{name}/train", trainImages.Rows, trainImages.Cols, classes, trainImages.Pixels, trainLabels, mean, std),
            new Dataset($"{name}/test", testImages.Rows, testImages.Cols, classes, testImages.Pixels, testLabels, mean, std),
            Convert.ToHexStringLower(sha.GetHashAndReset()));
    }

    static void CheckPair(string imagesPath, IdxImages images, string labelsPath, byte[] labels)
    {
        if (images.Count != labels.Length)
            throw new DataFormatException($"{imagesPath} has {images.Count} images but {labelsPath} has {labels.Length} labels; expected equal counts");
    }

    /// Train and test splits drawn from one synthetic distribution (different samples), both
    /// normalised with the training split's statistics; the identity is the SHA-256 of the bytes.
    public static DatasetFolder Synthetic(int trainCount, int testCount, int seed, int height = 28, int width = 28, int classes = 10)
    {
        var train = Dataset.Synthetic("synthetic/train", trainCount, seed, height, width, classes);
        var test = Dataset.Synthetic("synthetic/test", testCount, seed, height, width, classes, (train.Mean, train.Std));
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(train.Pixels); sha.AppendData(train.Labels); sha.AppendData(test.Pixels); sha.AppendData(test.Labels);
        return new DatasetFolder("synthetic", train, test, Convert.ToHexStringLower(sha.GetHashAndReset()));
    }
}
