using System.Text.Json;
using System.Text.Json.Serialization;

namespace DistTrain.Coordinator.Reporting;

/// The --report file: DESIGN.md's contract that scripts rely on. Field names and meaning are fixed.
public sealed record TrainingReport
{
    public required Cluster.RunStatus Status { get; init; }
    public required string Dataset { get; init; }
    public required string DatasetSha256 { get; init; }
    public required string Model { get; init; }
    public required int Workers { get; init; }
    public required int Epochs { get; init; }
    public required long Steps { get; init; }
    public required int GlobalBatch { get; init; }
    public required ulong Seed { get; init; }
    public required double FinalTrainLoss { get; init; }
    public required double TestLoss { get; init; }
    public required double TestAccuracy { get; init; }
    public required double WallSeconds { get; init; }
    public required double TrainImagesPerSecond { get; init; }
    public required string ParameterSha256 { get; init; }
    public required bool ReplicasConsistent { get; init; }
    public required int WorkerFailures { get; init; }
    public required long RedoneSteps { get; init; }

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// Written to a temporary file and renamed, so a reader never sees half a report.
    public void WriteTo(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var bytes = System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(this, Json) + "\n");
        DistTrain.Cnn.AtomicFile.Write(path, file => file.Write(bytes));   // never half a report, no temporary file left
    }
}
