using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using DistTrain.Coordinator.Reporting;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Cli;

/// --tensorboard DIR: the event file decodes, every CRC checked, to the values of the metrics file.
public class TensorBoardTests
{
    [Fact]
    public void Crc32c_is_the_castagnoli_checksum()
    {
        Assert.Equal(0xE3069283u, TensorBoardWriter.Crc32C("123456789"u8));   // the standard check value
        Assert.Equal(0u, TensorBoardWriter.Crc32C([]));
    }

    /// TFRecord's masked CRC-32C, computed bit by bit here (reflected polynomial 0x82F63B78),
    /// independently of the writer's.
    static uint Masked(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        crc = ~crc;
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    sealed record Scalar(long Step, string Tag, float Value);

    /// A reader of our own: TFRecords (length, masked CRC-32C of it, data, masked CRC-32C of the
    /// data), each an Event protobuf; returns the file_version and the scalars.
    static (string Version, List<Scalar> Scalars) Decode(string path)
    {
        var bytes = File.ReadAllBytes(path);
        string version = "";
        var scalars = new List<Scalar>();
        int at = 0;
        while (at < bytes.Length)
        {
            Assert.True(at + 12 <= bytes.Length, $"record header cut short at byte {at}");
            long length = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at));
            Assert.Equal(Masked(bytes.AsSpan(at, 8)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 8)));
            var data = bytes.AsSpan(at + 12, (int)length);
            Assert.Equal(Masked(data), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 12 + (int)length)));
            at += 12 + (int)length + 4;

            long step = 0;
            var tags = new List<(string, float)>();
            foreach (var (field, value) in Fields(data.ToArray()))
            {
                if (field == 2) step = (long)(ulong)value;
                else if (field == 3) version = Encoding.UTF8.GetString((byte[])value);
                else if (field == 5)
                    foreach (var (f, summaryValue) in Fields((byte[])value))
                    {
                        Assert.Equal(1, f);
                        string tag = ""; float simple = float.NaN;
                        foreach (var (g, v) in Fields((byte[])summaryValue))
                            if (g == 1) tag = Encoding.UTF8.GetString((byte[])v);
                            else if (g == 2) simple = BitConverter.Int32BitsToSingle((int)(uint)v);
                        tags.Add((tag, simple));
                    }
            }
            scalars.AddRange(tags.Select(t => new Scalar(step, t.Item1, t.Item2)));
        }
        return (version, scalars);
    }

    /// (field, value) of a protobuf message: ulong for varints, uint for fixed32, ulong for fixed64, byte[] for bytes.
    static IEnumerable<(int Field, object Value)> Fields(byte[] m)
    {
        int at = 0;
        ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; ; shift += 7)
            {
                byte b = m[at++];
                v |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return v;
            }
        }
        while (at < m.Length)
        {
            ulong key = Varint();
            int field = (int)(key >> 3);
            switch (key & 7)
            {
                case 0: yield return (field, Varint()); break;
                case 1: yield return (field, BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan(at))); at += 8; break;
                case 5: yield return (field, BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(at))); at += 4; break;
                case 2: { int n = (int)Varint(); yield return (field, m[at..(at + n)]); at += n; break; }
                default: throw new InvalidDataException($"wire type {key & 7}");
            }
        }
    }

    [Fact]
    public void The_event_file_holds_the_values_of_the_metrics_file()
    {
        using var dir = new TempFolder("tensorboard");
        string data = CliHarness.IdxFolder(dir.Path, train: 256, test: 64, seed: 2);
        var (exit, stdout, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--batch", "16", "--epochs", "2",
                                                    "--metrics", dir["m.jsonl"], "--tensorboard", dir["tb"], "--progress", "plain");
        Assert.True(exit == 0, stdout + stderr);
        var file = Assert.Single(Directory.GetFiles(dir["tb"]));
        Assert.Contains("events.out.tfevents.", file);
        var (version, scalars) = Decode(file);
        Assert.Equal("brain.Event:2", version);

        var lines = File.ReadLines(dir["m.jsonl"]).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var steps = lines.Where(l => l.GetProperty("event").GetString() == "step").ToList();
        var epochs = lines.Where(l => l.GetProperty("event").GetString() == "epoch").ToList();
        Assert.Equal(32, steps.Count);
        Assert.Equal(2, epochs.Count);
        foreach (var s in steps)
        {
            long step = s.GetProperty("step").GetInt64();
            Assert.Equal((float)s.GetProperty("loss").GetDouble(), scalars.Single(x => x.Step == step && x.Tag == "train/loss").Value);
            Assert.Equal((float)s.GetProperty("accuracy").GetDouble(), scalars.Single(x => x.Step == step && x.Tag == "train/accuracy").Value);
            Assert.Equal((float)s.GetProperty("lr").GetDouble(), scalars.Single(x => x.Step == step && x.Tag == "train/learning_rate").Value);
        }
        foreach (var e in epochs)
        {
            long step = e.GetProperty("step").GetInt64();
            foreach (var name in new[] { "train_loss", "train_accuracy", "test_loss", "test_accuracy" })
                Assert.Equal((float)e.GetProperty(name).GetDouble(), scalars.Single(x => x.Step == step && x.Tag == $"epoch/{name}").Value);
        }
        Assert.Equal(32 * 4 + 2 * 4, scalars.Count);
    }

    [Fact]
    public void An_unwritable_folder_is_one_line_and_exit_2()
    {
        using var dir = new TempFolder("tensorboard");
        string data = CliHarness.IdxFolder(dir.Path, train: 64, test: 16, seed: 2);
        File.WriteAllText(dir["file"], "");
        var (exit, _, stderr) = CliHarness.Run("train", "--data", data, "--in-process", "--max-steps", "1", "--tensorboard", dir["file/tb"]);
        Assert.Equal(2, exit);
        Assert.Contains("--tensorboard", stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
