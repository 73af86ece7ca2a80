using System.Text.Json.Serialization;

namespace DistTrain.Coordinator.Cluster;

/// How a run ended. Its text ("completed", ...) is what the report's "status", the last line of
/// `train` and JobFinished carry; scripts rely on it.
[JsonConverter(typeof(JsonStringEnumConverter<RunStatus>))]
public enum RunStatus
{
    [JsonStringEnumMemberName("completed")] Completed,
    [JsonStringEnumMemberName("diverged")] Diverged,
    [JsonStringEnumMemberName("failed")] Failed,
    [JsonStringEnumMemberName("interrupted")] Interrupted,
}

public static class RunStatusText
{
    public static string Text(this RunStatus status) => status switch
    {
        RunStatus.Completed => "completed",
        RunStatus.Diverged => "diverged",
        RunStatus.Failed => "failed",
        RunStatus.Interrupted => "interrupted",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "unknown run status"),
    };
}
