namespace DistTrain.Cnn.Checkpoints;

/// A user-facing checkpoint error: one line naming the file and what is wrong. Control characters
/// (a newline in a tensor name read from a hostile file, say) are escaped so the one line stays one line.
public sealed class CheckpointFormatException(string message) : Exception(OneLine(message))
{
    static string OneLine(string message) =>
        message.Any(char.IsControl) || message.Contains('\u2028') || message.Contains('\u2029')
            ? string.Concat(message.Select(c => char.IsControl(c) || c is '\u2028' or '\u2029' ? $"\\u{(int)c:x4}" : c.ToString()))
            : message;
}
