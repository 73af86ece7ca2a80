namespace DistTrain.Coordinator;

/// A user's bad input to the library (a metrics file, a port, a pair of TLS files): its message is
/// one line naming the input and what was expected; the CLI prints it and exits 2.
public sealed class BadInputException(string message) : Exception(message);
