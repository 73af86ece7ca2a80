namespace DistTrain.Cnn.Training;

/// The loss or gradient became NaN or infinite; training must stop and keep the last good checkpoint.
public sealed class TrainingDivergedException(string message) : Exception(message);
