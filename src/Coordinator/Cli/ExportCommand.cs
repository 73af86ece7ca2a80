using System.CommandLine;
using DistTrain.Cnn.Export;
using DistTrain.Cnn.Training;

namespace DistTrain.Coordinator.Cli;

/// disttrain export: a checkpoint's model as an ONNX file.
public static class ExportCommand
{
    static readonly Option<string?> CheckpointOption = Opt.Text("--checkpoint FILE", "a .safetensors checkpoint written by disttrain train (required)");
    static readonly Option<string?> OnnxOption = Opt.Text("--onnx OUT", "the ONNX file to write (required)");

    public static Command Create(TextWriter output)
    {
        var command = new Command("export", $"a checkpoint's model as ONNX (opset {OnnxExport.Opset}): input \"{OnnxExport.InputName}\" (pixel / 255, N x C x H x W), output \"{OnnxExport.OutputName}\"")
        {
            CheckpointOption, OnnxOption,
        };
        command.SetAction(p => Run(p, output));
        return command;
    }

    static int Run(ParseResult a, TextWriter output)
    {
        var path = a.GetValue(CheckpointOption) ?? throw new UsageException("export needs --checkpoint FILE");
        var onnx = a.GetValue(OnnxOption) ?? throw new UsageException("export needs --onnx OUT");
        var checkpoint = TrainingCheckpoint.Load(path);
        var info = checkpoint.RequireInference();
        string? folder = Path.GetDirectoryName(Path.GetFullPath(onnx));
        if (folder is not null && !Directory.Exists(folder)) throw new UsageException($"--onnx {onnx}: folder {folder} does not exist");
        try { OnnxExport.Write(onnx, checkpoint.Model, info); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--onnx {onnx}: cannot write: {e.Message}");
        }
        output.WriteLine($"wrote {onnx}: model {checkpoint.Model.Name} at step {checkpoint.Step}, {new FileInfo(onnx).Length:N0} bytes, opset {OnnxExport.Opset}; " +
                         $"input {OnnxExport.InputName} N x {checkpoint.Model.InputShape.C} x {checkpoint.Model.InputShape.H} x {checkpoint.Model.InputShape.W} (pixel / 255), " +
                         $"output {OnnxExport.OutputName} N x {checkpoint.Model.OutputShape.Size}");
        return ExitCodes.Done;
    }
}
