using DistTrain.Cnn.Models;
using DistTrain.Cnn.Optim;
using DistTrain.Cnn.Training;
using DistTrain.TestSupport;

namespace DistTrain.Cnn.Tests.Training;

/// Rotation keeps the newest valid checkpoints: a corrupt file never pushes a valid one out.
public class CheckpointRotationTests
{
    static void Write(string path, long step)
    {
        var model = Model.Create(Presets.LeNet5);
        model.Initialize((ulong)step);
        TrainingCheckpoint.Save(path, model, Optimizer.Create(new OptimizerSettings(), model.ParameterCount), step, 0, 1, 64, 16, "mnist", "00");
    }

    [Fact]
    public void Corrupt_files_do_not_count_among_the_newest_three()
    {
        using var dir = new TempFolder("rotation");
        var checkpoints = new CheckpointDirectory(dir.Path);
        for (long step = 1; step <= 3; step++) checkpoints.Save(path => Write(path, step), step);
        // Two newer files that are not checkpoints (a disk that filled up, a copy cut short).
        File.WriteAllBytes(checkpoints.FileFor(4), new byte[100]);
        File.WriteAllText(checkpoints.FileFor(5), "garbage");
        checkpoints.Save(path => Write(path, 6), 6);

        var valid = checkpoints.NewestFirst().Where(f => { try { TrainingCheckpoint.Load(f); return true; } catch (DistTrain.Cnn.Checkpoints.CheckpointFormatException) { return false; } })
                               .Select(Path.GetFileName).ToArray();
        Assert.Equal(["step-00000006.safetensors", "step-00000003.safetensors", "step-00000002.safetensors"], valid);
        Assert.False(File.Exists(checkpoints.FileFor(1)));   // older than the three kept
        Assert.Equal(6, checkpoints.LoadNewestValid(_ => { })!.Step);

        // Later saves rotate as usual, and the corrupt files go once they are older than the kept.
        for (long step = 7; step <= 9; step++) checkpoints.Save(path => Write(path, step), step);
        Assert.Equal(["step-00000009.safetensors", "step-00000008.safetensors", "step-00000007.safetensors"], checkpoints.NewestFirst().Select(Path.GetFileName));
    }
}
