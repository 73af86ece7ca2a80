using System.Security.Cryptography;

namespace DistTrain.Cnn.Data;

/// The train and test splits of one dataset folder and the folder's identity: the SHA-256 of its
/// files concatenated in a fixed order. A folder holds one of: MNIST's four IDX files (also
/// Fashion-MNIST's), CIFAR-10's binary batches, CIFAR-100's binary files (these two may also sit
/// in the sub-folder their archive unpacks to), or images in one sub-folder per class (<see cref="ImageFolder"/>). Both splits are normalised per channel
/// with the training split's statistics.
public sealed record DatasetFolder(string Name, Dataset Train, Dataset Test, string Sha256)
{
    /// The classes' names where the data has them (an image folder's sub-folders), label order; else empty.
    public IReadOnlyList<string> ClassNames { get; init; } = [];

    public static readonly IReadOnlyList<string> FileNames =
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    /// Where the CIFAR archives unpack their files.
    static readonly string[] CifarSubfolders = ["cifar-10-batches-bin", "cifar-100-binary"];

    public static DatasetFolder Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new DataFormatException($"{dir}: dataset folder not found (run deploy/fetch-mnist.sh, or pass --data DIR)");
        string name = new DirectoryInfo(dir).Name;
        if (FileNames.Any(f => File.Exists(Path.Combine(dir, f)))) return LoadIdx(dir, name);
        if (ImageFolder.Holds(dir)) return ImageFolder.Load(dir);
        foreach (var folder in CifarSubfolders.Select(s => Path.Combine(dir, s)).Where(Directory.Exists).Prepend(dir))
        {
            if (CifarFile.Cifar10Train.Append(CifarFile.Cifar10Test).Any(f => File.Exists(Path.Combine(folder, f))))
                return LoadCifar(folder, name, CifarFile.Cifar10, [.. CifarFile.Cifar10Train], CifarFile.Cifar10Test);
            if (File.Exists(Path.Combine(folder, CifarFile.Cifar100Train)) || File.Exists(Path.Combine(folder, CifarFile.Cifar100Test)))
                return LoadCifar(folder, name, CifarFile.Cifar100, [CifarFile.Cifar100Train], CifarFile.Cifar100Test);
        }
        throw new DataFormatException($"{dir}: no dataset found; expected MNIST's IDX files ({string.Join(", ", FileNames)}), " +
                                      $"CIFAR-10's binary batches ({string.Join(", ", CifarFile.Cifar10Train)}, {CifarFile.Cifar10Test}) " +
                                      $"CIFAR-100's ({CifarFile.Cifar100Train}, {CifarFile.Cifar100Test}), " +
                                      $"or an image folder ({ImageFolder.Train}/CLASS/*.png and {ImageFolder.Test}/CLASS/*.png)");
    }

    static DatasetFolder LoadIdx(string dir, string name)
    {
        string P(int i) => Path.Combine(dir, FileNames[i]);
        var trainImages = IdxFile.ReadImages(P(0));
        var trainLabels = IdxFile.ReadLabels(P(1));
        var testImages = IdxFile.ReadImages(P(2));
        var testLabels = IdxFile.ReadLabels(P(3));
        CheckPair(P(0), trainImages, P(1), trainLabels);
        CheckPair(P(2), testImages, P(3), testLabels);
        if (testImages.Rows != trainImages.Rows || testImages.Cols != trainImages.Cols)
            throw new DataFormatException($"{P(2)}: images are {testImages.Rows}x{testImages.Cols}, but {P(0)} has {trainImages.Rows}x{trainImages.Cols}");

        var (mean, std) = Dataset.Statistics(trainImages.Pixels);
        int classes = Math.Max(10, Math.Max(trainLabels.DefaultIfEmpty().Max(), testLabels.DefaultIfEmpty().Max()) + 1);
        return new DatasetFolder(name,
            new Dataset($"{name}/train", trainImages.Rows, trainImages.Cols, classes, trainImages.Pixels, trainLabels, mean, std),
            new Dataset($"{name}/test", testImages.Rows, testImages.Cols, classes, testImages.Pixels, testLabels, mean, std),
            Sha256Of(Enumerable.Range(0, 4).Select(P)));
    }

    static void CheckPair(string imagesPath, IdxImages images, string labelsPath, byte[] labels)
    {
        if (images.Count != labels.Length)
            throw new DataFormatException($"{imagesPath} has {images.Count} images but {labelsPath} has {labels.Length} labels; expected equal counts");
    }

    /// Every file of the format must be there: a missing batch is named, not silently skipped.
    static DatasetFolder LoadCifar(string dir, string name, CifarFile.Layout layout, string[] trainFiles, string testFile)
    {
        var paths = trainFiles.Append(testFile).Select(f => Path.Combine(dir, f)).ToArray();
        if (paths.FirstOrDefault(p => !File.Exists(p)) is string missing)
            throw new DataFormatException($"{missing}: file not found; a {layout.Name} folder holds {string.Join(", ", trainFiles.Append(testFile))}");
        var parts = paths.Select(p => CifarFile.Read(p, layout)).ToArray();
        byte[] trainPixels = [.. parts[..^1].SelectMany(p => p.Pixels)], trainLabels = [.. parts[..^1].SelectMany(p => p.Labels)];
        var (testPixels, testLabels) = parts[^1];
        const int plane = CifarFile.Side * CifarFile.Side;
        var (mean, std) = Dataset.Statistics(trainPixels, CifarFile.Channels, plane);
        Dataset Split(string split, byte[] pixels, byte[] labels) =>
            new($"{name}/{split}", CifarFile.Channels, CifarFile.Side, CifarFile.Side, layout.ClassCount, pixels, labels, mean, std);
        return new DatasetFolder(name, Split("train", trainPixels, trainLabels), Split("test", testPixels, testLabels), Sha256Of(paths));
    }

    static string Sha256Of(IEnumerable<string> paths)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var p in paths) sha.AppendData(DataFiles.ReadAll(p));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// Train and test splits drawn from one synthetic distribution (different samples), both
    /// normalised with the training split's statistics; the identity is the SHA-256 of the bytes.
    public static DatasetFolder Synthetic(int trainCount, int testCount, int seed, int height = 28, int width = 28, int classes = 10, int channels = 1)
    {
        var train = Dataset.Synthetic("synthetic/train", trainCount, seed, height, width, classes, channels: channels);
        var test = Dataset.Synthetic("synthetic/test", testCount, seed, height, width, classes, ([.. train.Mean], [.. train.Std]), channels);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(train.Pixels); sha.AppendData(train.Labels); sha.AppendData(test.Pixels); sha.AppendData(test.Labels);
        return new DatasetFolder("synthetic", train, test, Convert.ToHexStringLower(sha.GetHashAndReset()));
    }
}
