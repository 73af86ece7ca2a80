namespace DistTrain.Cnn.Checkpoints;

/// A user-facing checkpoint error: one line naming the file and what is wrong.
public sealed class CheckpointFormatException(string message) : Exception(message);
