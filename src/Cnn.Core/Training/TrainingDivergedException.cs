namespace DistTrain.Cnn.Training;

/// The loss or gradient became NaN or infinite; training must stop and keep the last good checkpoint.
public sealed class TrainingDivergedException(string message) : Exception(message);

public static class Finite
{
    public static bool All(ReadOnlySpan<float> values)
    {
        foreach (float v in values) if (!float.IsFinite(v)) return false;
        return true;
    }
}
