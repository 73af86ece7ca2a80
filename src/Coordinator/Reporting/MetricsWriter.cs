using System.Text.Json;
using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Reporting;

/// --metrics FILE.jsonl: one JSON object per line, {"event":"step",...} and {"event":"epoch",...}.
public sealed class MetricsWriter : IDisposable
{
    readonly StreamWriter _out;
    readonly byte[] _scratch = new byte[4096];

    public MetricsWriter(string path, bool append)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        _out = new StreamWriter(path, append) { AutoFlush = false };
    }

    /// allReduceBytes: the gradient payload all workers sent in the step's all-reduce (its bytes on
    /// the wire, which the bench compares with 8 bytes a value).
    public void Step(StepReport r, long allReduceBytes) => Write(w =>
    {
        w.WriteString("event", "step");
        w.WriteNumber("step", r.Step);
        w.WriteNumber("epoch", r.Epoch + 1);
        Number(w, "loss", r.Loss);
        Number(w, "accuracy", r.Accuracy);
        w.WriteNumber("lr", r.LearningRate);
        w.WriteNumber("images_per_second", Math.Round(r.ImagesPerSecond, 1));
        w.WriteNumber("allreduce_bytes", allReduceBytes);
    });

    public void Epoch(EpochReport r) => Write(w =>
    {
        w.WriteString("event", "epoch");
        w.WriteNumber("epoch", r.Epoch + 1);
        w.WriteNumber("step", r.Step);
        Number(w, "train_loss", r.Train.MeanLoss);
        Number(w, "train_accuracy", r.Train.Accuracy);
        Number(w, "test_loss", r.Test.MeanLoss);
        Number(w, "test_accuracy", r.Test.Accuracy);
        w.WriteNumber("seconds", Math.Round(r.Seconds, 3));
        w.WriteNumber("images_per_second", Math.Round(r.ImagesPerSecond, 1));
    }, flush: true);

    static void Number(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsFinite(v)) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }

    void Write(Action<Utf8JsonWriter> body, bool flush = false)
    {
        using var stream = new MemoryStream(_scratch);
        using (var w = new Utf8JsonWriter(stream)) { w.WriteStartObject(); body(w); w.WriteEndObject(); }
        _out.WriteLine(System.Text.Encoding.UTF8.GetString(_scratch, 0, (int)stream.Position));
        if (flush) _out.Flush();
    }

    /// Flushes and closes. Throws when the last lines cannot be written; a second call (the
    /// caller's `using` after an explicit Dispose that failed) does nothing.
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try { _out.Dispose(); }
        catch (IOException)
        {
            try { _out.BaseStream.Dispose(); } catch (IOException) { }   // the unflushed lines are lost with the file's space
            throw;
        }
    }

    bool _disposed;
}
