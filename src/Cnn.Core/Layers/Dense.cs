using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Layers;

/// Fully connected layer over the flattened sample. Parameters: weight [out, in], then bias [out].
public sealed class Dense : Layer
{
    public Dense(int outFeatures)
    {
        if (outFeatures < 1) throw new ArgumentException($"units must be >= 1, got {outFeatures}");
        OutFeatures = outFeatures;
    }

    public int OutFeatures { get; }
    int InFeatures => InputShape.Size;

    public override int ParameterCount => OutFeatures * InFeatures + OutFeatures;
    public override IEnumerable<(string Suffix, int[] Shape)> ParameterLayout =>
        [("weight", [OutFeatures, InFeatures]), ("bias", [OutFeatures])];

    protected override SampleShape OutputShapeFor(SampleShape input) => new(OutFeatures, 1, 1);

    public override void Initialize(ref DeterministicRandom rng)
    {
        int weights = OutFeatures * InFeatures;
        InitWeights(Parameters[..weights], InFeatures, OutFeatures, Init, ref rng);
        Parameters[weights..].Clear();
    }

    Tensor? _input, _output, _gradInput;

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        int n = input.N, weights = OutFeatures * InFeatures;
        _input = input;
        var output = Tensor.Ensure(ref _output, OutputShape, n);
        // y[n, o] = x[n, :] . W[o, :] + b[o]
        Gemm.NT(input.Memory, ParameterMemory[..weights], output.Memory, n, OutFeatures, InFeatures, accumulate: false);
        ReadOnlySpan<float> bias = Parameters[weights..];
        Span<float> y = output.Span;
        for (int s = 0; s < n; s++)
        {
            var row = y.Slice(s * OutFeatures, OutFeatures);
            for (int o = 0; o < OutFeatures; o++) row[o] += bias[o];
        }
        return output;
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var input = _input ?? throw new InvalidOperationException("dense: Backward before Forward");
        int n = gradOutput.N, weights = OutFeatures * InFeatures;
        // dW[o, i] += sum_n dy[n, o] x[n, i]  (A = dy^T via strides)
        Gemm.NN(gradOutput.Memory, 1, OutFeatures, input.Memory, GradientMemory[..weights], OutFeatures, InFeatures, n, accumulate: true);
        Span<float> gradBias = Gradients[weights..];
        ReadOnlySpan<float> dy = gradOutput.Span;
        for (int o = 0; o < OutFeatures; o++)
        {
            float sum = 0;
            for (int s = 0; s < n; s++) sum += dy[s * OutFeatures + o];
            gradBias[o] += sum;
        }

        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, n);
        if (!ComputeInputGradient) return gradInput;
        // dx[n, i] = sum_o dy[n, o] W[o, i]
        Gemm.NN(gradOutput.Memory, OutFeatures, 1, ParameterMemory[..weights], gradInput.Memory, n, InFeatures, OutFeatures, accumulate: false);
        return gradInput;
    }
}
