using System.Security.Cryptography;
using DistTrain.Cnn.Data;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Data;

/// CIFAR-10/100 binary folders (written here: the real files cannot be fetched on these machines)
/// load into 3 x 32 x 32 datasets normalised per channel; every malformed file is one line naming it.
public sealed class CifarFileTests : IDisposable
{
    readonly TempFolder _dir = new("cifar");
    public void Dispose() => _dir.Dispose();

    static void AssertOneLine(DataFormatException e, params string[] fragments)
    {
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Fact]
    public void A_CIFAR_10_folder_loads_its_samples_labels_and_per_channel_statistics()
    {
        var source = CifarFolder.Synthetic(103, 21, seed: 4);   // 103 training samples: batches of 20 and 21
        string dir = CifarFolder.Write(_dir["c10"], source, CifarFile.Cifar10);
        var loaded = DatasetFolder.Load(dir);

        Assert.Equal((3, 32, 32, 10), (loaded.Train.Channels, loaded.Train.Height, loaded.Train.Width, loaded.Train.Classes));
        Assert.Equal(source.Train.Pixels.ToArray(), loaded.Train.Pixels.ToArray());
        Assert.Equal(source.Train.Labels.ToArray(), loaded.Train.Labels.ToArray());
        Assert.Equal(source.Test.Pixels.ToArray(), loaded.Test.Pixels.ToArray());
        Assert.Equal(source.Test.Labels.ToArray(), loaded.Test.Labels.ToArray());

        // Per channel, over the training split only, and the test split normalised with the same.
        var pixels = loaded.Train.Pixels.ToArray();
        for (int c = 0; c < 3; c++)
        {
            var values = Enumerable.Range(0, loaded.Train.Count).SelectMany(s => pixels.Skip(s * 3072 + c * 1024).Take(1024)).Select(b => b / 255.0).ToArray();
            double mean = values.Average(), std = Math.Sqrt(values.Select(v => (v - mean) * (v - mean)).Average());
            Assert.Equal(mean, loaded.Train.Mean[c], 5);
            Assert.Equal(std, loaded.Train.Std[c], 5);
        }
        Assert.NotEqual(loaded.Train.Mean[0], loaded.Train.Mean[1]);   // the channels differ, so one mean for all would be wrong
        Assert.Equal(loaded.Train.Mean, loaded.Test.Mean);
        Assert.Equal(loaded.Train.Std, loaded.Test.Std);

        // The identity is the SHA-256 of the six files in order; the archive's own sub-folder loads the same.
        var files = CifarFile.Cifar10Train.Append(CifarFile.Cifar10Test).SelectMany(f => File.ReadAllBytes(Path.Combine(dir, f))).ToArray();
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(files)), loaded.Sha256);
        string nested = CifarFolder.Write(Path.Combine(_dir["archive"], "cifar-10-batches-bin"), source, CifarFile.Cifar10);
        Assert.Equal(loaded.Sha256, DatasetFolder.Load(_dir["archive"]).Sha256);
        Assert.True(Directory.Exists(nested));
    }

    [Fact]
    public void Gather_normalises_each_channel_with_its_own_statistics_in_CHW_order()
    {
        var data = DatasetFolder.Load(CifarFolder.Write(_dir["c10"], CifarFolder.Synthetic(50, 10, seed: 6), CifarFile.Cifar10)).Train;
        var dst = new float[2 * 3072];
        var labels = new int[2];
        data.Gather([7, 31], dst, labels);
        for (int s = 0; s < 2; s++)
        {
            int index = s == 0 ? 7 : 31;
            Assert.Equal(data.Label(index), labels[s]);
            for (int i = 0; i < 3072; i++)
            {
                int c = i / 1024;
                float expected = (data.Pixels[index * 3072 + i] / 255f - data.Mean[c]) / data.Std[c];
                Assert.Equal(expected, dst[s * 3072 + i]);
            }
        }
    }

    [Fact]
    public void A_CIFAR_100_folder_trains_on_its_fine_labels()
    {
        var source = CifarFolder.Synthetic(200, 100, seed: 8, classes: 100);
        var loaded = DatasetFolder.Load(CifarFolder.Write(_dir["c100"], source, CifarFile.Cifar100));
        Assert.Equal(100, loaded.Train.Classes);
        Assert.Equal(source.Train.Labels.ToArray(), loaded.Train.Labels.ToArray());
        Assert.Contains(loaded.Test.Labels.ToArray(), l => l >= 20);   // fine labels, not the coarse ones before them
    }

    [Fact]
    public void Malformed_files_and_folders_are_one_line_naming_the_file()
    {
        var source = CifarFolder.Synthetic(30, 10, seed: 2);
        string Fresh(string name) => CifarFolder.Write(_dir[name], source, CifarFile.Cifar10);

        string dir = Fresh("truncated");
        string batch = Path.Combine(dir, "data_batch_2.bin");
        File.WriteAllBytes(batch, File.ReadAllBytes(batch)[..^100]);
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), batch, "not whole CIFAR-10 records of 3073 bytes", "2973 bytes left over");

        dir = Fresh("empty");
        File.WriteAllBytes(Path.Combine(dir, "test_batch.bin"), []);
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), "test_batch.bin: empty");

        dir = Fresh("label");
        string test = Path.Combine(dir, "test_batch.bin");
        var bytes = File.ReadAllBytes(test);
        bytes[3 * 3073] = 10;
        File.WriteAllBytes(test, bytes);
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), test, "record 3: label 10 is out of range, expected 0..9");

        dir = Fresh("missing");
        File.Delete(Path.Combine(dir, "data_batch_3.bin"));
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(dir)), "data_batch_3.bin: file not found", "data_batch_1.bin");

        string c100 = CifarFolder.Write(_dir["coarse"], CifarFolder.Synthetic(10, 10, seed: 1, classes: 100), CifarFile.Cifar100);
        string train = Path.Combine(c100, "train.bin");
        bytes = File.ReadAllBytes(train);
        bytes[0] = 20;
        File.WriteAllBytes(train, bytes);
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(c100)), train, "record 0: coarse label 20 is out of range, expected 0..19");

        string nothing = Directory.CreateDirectory(_dir["nothing"]).FullName;
        AssertOneLine(Assert.Throws<DataFormatException>(() => DatasetFolder.Load(nothing)), "no dataset found", "data_batch_1.bin", "train.bin", "train-images-idx3-ubyte");
    }

    [Fact]
    public void A_dataset_checks_its_channel_statistics_and_shape()
    {
        AssertOneLine(Assert.Throws<DataFormatException>(() => new Dataset("d", 3, 2, 2, 10, new byte[12], [1], [0.5f, 0.5f], [0.2f, 0.2f])),
                      "2 means and 2 standard deviations for 3 channels");
        AssertOneLine(Assert.Throws<DataFormatException>(() => new Dataset("d", 2, 1, 1, 10, [0, 0], [1], [0.5f, 0.5f], [0.2f, 0f])),
                      "channel 1", "blank");
        AssertOneLine(Assert.Throws<DataFormatException>(() => new Dataset("d", 2, 1, 1, 10, [0, 0, 0], [1], [0.5f, 0.5f], [0.2f, 0.2f])),
                      "3 pixels do not make 1 images of 2x1x1");
    }
}
