using System.Buffers.Binary;
using System.Numerics;
using DistTrain.Cnn.Export;

namespace DistTrain.Coordinator.Reporting;

/// --tensorboard DIR: TensorBoard's event file (DIR/events.out.tfevents.SECONDS.HOST), scalars per
/// step (train/loss, train/accuracy, train/learning_rate, train/images_per_second) and per epoch
/// (epoch/train_loss, epoch/train_accuracy, epoch/test_loss, epoch/test_accuracy). The file is a
/// sequence of TFRecords (length, masked CRC-32C of the length, an Event protobuf, masked CRC-32C
/// of the event); the first event names the format, "brain.Event:2". A resumed run starts a new
/// file in the same folder, which TensorBoard reads as one run.
public sealed class TensorBoardWriter : IDisposable
{
    readonly FileStream _out;

    public string Path { get; }

    public TensorBoardWriter(string dir)
    {
        Directory.CreateDirectory(dir);
        long seconds = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string host = Environment.MachineName;
        // Two writers in one second (a quick resume) must not share a file.
        for (int n = 0; ; n++)
        {
            Path = System.IO.Path.Combine(dir, $"events.out.tfevents.{seconds}.{host}" + (n == 0 ? "" : $".{n}"));
            try { _out = new FileStream(Path, FileMode.CreateNew, FileAccess.Write, FileShare.Read); break; }
            catch (IOException) when (File.Exists(Path) && n < 100) { }
        }
        Record(Event(0).String(3, "brain.Event:2"));
        _out.Flush();
    }

    public void Step(long step, double loss, double accuracy, double learningRate, double imagesPerSecond) =>
        Scalars(step, ("train/loss", loss), ("train/accuracy", accuracy), ("train/learning_rate", learningRate), ("train/images_per_second", imagesPerSecond));

    public void Epoch(long step, double trainLoss, double trainAccuracy, double testLoss, double testAccuracy)
    {
        Scalars(step, ("epoch/train_loss", trainLoss), ("epoch/train_accuracy", trainAccuracy), ("epoch/test_loss", testLoss), ("epoch/test_accuracy", testAccuracy));
        _out.Flush();
    }

    /// One Event per scalar: Event.summary.value[0] = {tag, simple_value}, as TensorBoard's own writers do.
    void Scalars(long step, params (string Tag, double Value)[] scalars)
    {
        foreach (var (tag, value) in scalars)
        {
            if (!double.IsFinite(value)) continue;   // NaN/Inf would draw nothing useful; the run stops on them anyway
            var summaryValue = new ProtoWriter().String(1, tag).Float(2, (float)value);
            Record(Event(step).Message(5, new ProtoWriter().Message(1, summaryValue)));
        }
    }

    static ProtoWriter Event(long step) =>
        new ProtoWriter().Double(1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0).Int(2, step);

    void Record(ProtoWriter e)
    {
        var data = e.ToArray();
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], MaskedCrc(header[..8]));
        _out.Write(header);
        _out.Write(data);
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, MaskedCrc(data));
        _out.Write(footer);
    }

    /// CRC-32C (Castagnoli), rotated and offset as TFRecord masks it.
    public static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }

    public void Dispose() => _out.Dispose();
}
