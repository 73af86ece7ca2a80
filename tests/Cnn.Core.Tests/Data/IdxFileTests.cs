using System.Buffers.Binary;
using DistTrain.Cnn.Data;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Data;

public sealed class IdxFileTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-idx-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string P(string name) => Path.Combine(_dir, name);

    static void AssertOneLine(Exception e, params string[] fragments)
    {
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    /// Writes a folder of the four files; counts and sizes can be made inconsistent on purpose.
    string Folder(int trainImages = 20, int trainLabels = 20, int testImages = 10, int testLabels = 10, int testRows = 28)
    {
        var rng = new DeterministicRandom(1);
        byte[] Bytes(int n) { var b = new byte[n]; for (int i = 0; i < n; i++) b[i] = (byte)rng.NextInt(256); return b; }
        byte[] Labels(int n) => Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
        IdxFile.WriteImages(P("train-images-idx3-ubyte"), trainImages, 28, 28, Bytes(trainImages * 784));
        IdxFile.WriteLabels(P("train-labels-idx1-ubyte"), Labels(trainLabels));
        IdxFile.WriteImages(P("t10k-images-idx3-ubyte"), testImages, testRows, 28, Bytes(testImages * testRows * 28));
        IdxFile.WriteLabels(P("t10k-labels-idx1-ubyte"), Labels(testLabels));
        return _dir;
    }

    [Fact]
    public void Round_trip()
    {
        var pixels = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)(i * 7)).ToArray();
        IdxFile.WriteImages(P("i"), 2, 3, 4, pixels);
        IdxFile.WriteLabels(P("l"), [3, 9]);
        var images = IdxFile.ReadImages(P("i"));
        Assert.Equal((2, 3, 4), (images.Count, images.Rows, images.Cols));
        Assert.Equal(pixels, images.Pixels);
        Assert.Equal(new byte[] { 3, 9 }, IdxFile.ReadLabels(P("l")));
        // Header bytes are big-endian: 00 00 08 03, then 00 00 00 02 ...
        Assert.Equal(new byte[] { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4 }, File.ReadAllBytes(P("i"))[..16]);
    }

    [Fact]
    public void Wrong_magic_names_file_expected_and_found()
    {
        IdxFile.WriteLabels(P("x"), [1, 2]);
        var e = Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("x")));
        AssertOneLine(e, P("x"), "expected magic 0x00000803", "found 0x00000801");
    }

    [Fact]
    public void Wrong_rank_is_reported()
    {
        var bytes = new byte[12];
        BinaryPrimitives.WriteInt32BigEndian(bytes, 0x00000802);   // rank 2
        File.WriteAllBytes(P("r"), bytes);
        var e = Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("r")));
        AssertOneLine(e, "found 0x00000802", "rank 2", "need rank 3");
    }

    [Fact]
    public void Truncated_images_and_trailing_bytes()
    {
        IdxFile.WriteImages(P("t"), 3, 2, 2, new byte[12]);
        var bytes = File.ReadAllBytes(P("t"));
        File.WriteAllBytes(P("t"), bytes[..^1]);
        AssertOneLine(Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("t"))), P("t"), "truncated", "expected 28 bytes for 3 images of 2x2", "found 27");
        File.WriteAllBytes(P("t"), [.. bytes, 0]);
        AssertOneLine(Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("t"))), "1 unexpected trailing bytes");
        File.WriteAllBytes(P("t"), bytes[..6]);
        AssertOneLine(Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("t"))), "truncated: header needs 16 bytes");
        File.WriteAllBytes(P("t"), []);
        AssertOneLine(Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("t"))), "truncated");
    }

    [Fact]
    public void Missing_file_and_zero_dimension()
    {
        AssertOneLine(Assert.Throws<DataFormatException>(() => IdxFile.ReadLabels(P("none"))), P("none"), "file not found");
        IdxFile.WriteImages(P("z"), 0, 2, 2, []);
        AssertOneLine(Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(P("z"))), "dimension 1 is 0");
    }

    [Fact]
    public void Folder_loads_and_checks_counts_and_sizes()
    {
        var folder = DatasetFolder.Load(Folder());
        Assert.Equal((20, 10), (folder.Train.Count, folder.Test.Count));
        Assert.Equal(64, folder.Sha256.Length);

        Directory.Delete(_dir, true); Directory.CreateDirectory(_dir);
        var e = Assert.Throws<DataFormatException>(() => DatasetFolder.Load(Folder(trainLabels: 19)));
        AssertOneLine(e, "train-images-idx3-ubyte has 20 images", "train-labels-idx1-ubyte has 19 labels");

        Directory.Delete(_dir, true); Directory.CreateDirectory(_dir);
        e = Assert.Throws<DataFormatException>(() => DatasetFolder.Load(Folder(testRows: 27)));
        AssertOneLine(e, "t10k-images-idx3-ubyte: images are 27x28");

        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(P("absent"))), "absent", "dataset folder not found");
    }

    [Fact]
    public void Sha256_changes_when_one_byte_changes()
    {
        var dir = Folder();
        string before = DatasetFolder.Load(dir).Sha256;
        var f = P("t10k-images-idx3-ubyte");
        var bytes = File.ReadAllBytes(f);
        bytes[100] ^= 1;
        File.WriteAllBytes(f, bytes);
        Assert.NotEqual(before, DatasetFolder.Load(dir).Sha256);
    }

    [Fact]
    public void Real_mnist_when_fetched()
    {
        // tests/run.sh fetches MNIST first, so CI always runs this; a bare `dotnet test` without data returns early.
        var dir = Repository.Mnist;
        if (dir is null) return;
        var mnist = DatasetFolder.Load(dir);
        Assert.Equal((60000, 10000), (mnist.Train.Count, mnist.Test.Count));
        Assert.Equal((28, 28), (mnist.Train.Height, mnist.Train.Width));
        Assert.Equal(0.1307, mnist.Train.Mean[0], 3);   // the well-known MNIST normalisation constants
        Assert.Equal(0.3081, mnist.Train.Std[0], 3);
        Assert.Equal((28, 28), (mnist.Test.Height, mnist.Test.Width));
        Assert.Equal(10, mnist.Train.Labels.ToArray().Distinct().Count());
        Assert.All(mnist.Train.Labels.ToArray(), l => Assert.InRange(l, (byte)0, (byte)9));
        Assert.All(mnist.Test.Labels.ToArray(), l => Assert.InRange(l, (byte)0, (byte)9));
    }
}
