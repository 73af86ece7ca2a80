using System.Diagnostics;
using DistTrain.Cnn.Data;
using DistTrain.Cnn.Losses;
using DistTrain.Cnn.Models;
using DistTrain.Cnn.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace DistTrain.Cnn.Tests.Inference;

/// What the ONNX tests share: onnx.checker through Debian's python3-onnx, ONNX Runtime's logits,
/// DistTrain's own, and the comparison of the two.
static class OnnxCheck
{
    /// Runs onnx.checker.check_model(full_check=True) under /usr/bin/python3 (tests/run.sh installs
    /// python3-onnx); fails the test with the checker's message.
    public static void Checker(string onnxPath)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", "import sys, onnx; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print('valid')", onnxPath }) psi.ArgumentList.Add(a);
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e) { Assert.Fail($"/usr/bin/python3 cannot run ({e.Message}); tests/run.sh installs python3 and python3-onnx"); return; }
        using (p)
        {
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0 && output.Contains("valid"), $"onnx.checker rejected {onnxPath} (is python3-onnx installed? tests/run.sh installs it): {output}");
        }
    }

    /// ONNX Runtime's logits for samples [0, count) of `data`, fed as pixel / 255.
    public static float[] RuntimeLogits(string onnxPath, Dataset data, int count, int batch = 500)
    {
        using var session = new InferenceSession(onnxPath);
        var result = new List<float>();
        int size = data.SampleSize;
        for (int first = 0; first < count; first += batch)
        {
            int n = Math.Min(batch, count - first);
            var pixels = new float[n * size];
            var source = data.Pixels.Slice(first * size, n * size);
            for (int i = 0; i < pixels.Length; i++) pixels[i] = source[i] / 255f;
            var input = new DenseTensor<float>(pixels, [n, data.Channels, data.Height, data.Width]);
            using var outputs = session.Run([NamedOnnxValue.CreateFromTensor("pixels", input)]);
            result.AddRange(outputs[0].AsEnumerable<float>());
        }
        return [.. result];
    }

    /// DistTrain's own logits (the forward pass of eval) for samples [0, count) of `data`.
    public static float[] OwnLogits(Model model, Dataset data, int count)
    {
        var computer = new GradientComputer(model, new SoftmaxCrossEntropy());
        int outputs = model.OutputShape.Size;
        var logits = new float[count * outputs];
        for (int first = 0; first < count; first += 500)
        {
            int n = Math.Min(500, count - first);
            computer.Logits(data, Enumerable.Range(first, n).ToArray()).CopyTo(logits.AsSpan(first * outputs));
        }
        return logits;
    }

    /// Every image's logits agree within `relative` of the largest magnitude among its own.
    public static void Close(float[] expected, float[] actual, int outputs, double relative, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length / outputs; i++)
        {
            var e = expected.AsSpan(i * outputs, outputs);
            var a = actual.AsSpan(i * outputs, outputs);
            double scale = 0, worst = 0;
            for (int k = 0; k < outputs; k++) { scale = Math.Max(scale, Math.Abs(e[k])); worst = Math.Max(worst, Math.Abs(e[k] - a[k])); }
            Assert.True(worst <= relative * scale, $"{what}, image {i}: logits differ by {worst:G4}, more than {relative:G2} x {scale:G4}");
        }
    }

    public static int[] Top1(float[] logits, int outputs) =>
        [.. Enumerable.Range(0, logits.Length / outputs).Select(i => DistTrain.Cnn.Inference.Predictor.ArgMax(logits.AsSpan(i * outputs, outputs)))];
}
