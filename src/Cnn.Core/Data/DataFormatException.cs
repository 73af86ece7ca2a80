namespace DistTrain.Cnn.Data;

/// A user-facing data error. The message is one line naming the file and what was expected,
/// e.g. "data/mnist/train-images-idx3-ubyte: expected magic 0x00000803, found 0x00000801".
public sealed class DataFormatException(string message) : Exception(message);
