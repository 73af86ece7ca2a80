namespace DistTrain.Cnn.Layers;

/// What a forward pass needs to know besides its input: whether it trains, and the identity of
/// every sample so that randomness (dropout) depends on (seed, epoch, step, sample) only.
public readonly record struct BatchContext(bool Training, ulong Seed, int Epoch, long Step, ReadOnlyMemory<int> SampleIds)
{
    public static BatchContext Inference => new(false, 0, 0, 0, ReadOnlyMemory<int>.Empty);
}

/// How a layer's weights are drawn: He for layers followed by ReLU, Xavier for tanh/sigmoid and the output.
public enum WeightInit { He, Xavier }

/// A named slice of the model's flat parameter vector, e.g. "conv1.weight" [6,1,5,5].
public readonly record struct ParameterView(string Name, int[] Shape, int Offset, int Length);

/// One layer of a model. Forward and Backward sit next to each other in every subclass.
/// Backward ADDS into the parameter gradients so gradients of several micro-batches accumulate,
/// and returns the gradient with respect to the layer's input.
public abstract class Layer
{
    float[] _parameters = [];
    float[] _gradients = [];
    int _offset;

    /// Set by the model, e.g. "conv1"; names the layer's parameters in checkpoints.
    public string Name { get; internal set; } = "";
    public SampleShape InputShape { get; private set; }
    public SampleShape OutputShape { get; private set; }

    /// The first layer's input gradient is never used, so the model switches it off.
    public bool ComputeInputGradient { get; set; } = true;

    public virtual int ParameterCount => 0;

    /// The ranges of the layer's slice (offsets from its start) that hold statistics rather than
    /// trained parameters (BatchNorm's running mean and variance): the optimizer leaves them alone,
    /// and their gradient slots carry what the replica sums to update them (<see cref="BatchNorm"/>).
    public virtual IEnumerable<(int Offset, int Length)> StatisticRanges => [];

    /// How the parameters are laid out in this layer's slice, in order (weight first, then bias).
    public virtual IEnumerable<(string Suffix, int[] Shape)> ParameterLayout => [];

    public WeightInit Init { get; set; } = WeightInit.He;

    /// Fixes the shapes; called once by the model before parameters are bound.
    internal virtual void Build(SampleShape input)
    {
        InputShape = input;
        OutputShape = OutputShapeFor(input);
    }

    internal virtual void Bind(float[] parameters, float[] gradients, int offset)
    {
        _parameters = parameters;
        _gradients = gradients;
        _offset = offset;
    }

    public int ParameterOffset => _offset;

    protected Span<float> Parameters => _parameters.AsSpan(_offset, ParameterCount);
    protected Span<float> Gradients => _gradients.AsSpan(_offset, ParameterCount);
    protected Memory<float> ParameterMemory => _parameters.AsMemory(_offset, ParameterCount);
    protected Memory<float> GradientMemory => _gradients.AsMemory(_offset, ParameterCount);

    protected abstract SampleShape OutputShapeFor(SampleShape input);

    /// Draws initial parameters into this layer's slice.
    public virtual void Initialize(ref DeterministicRandom rng) { }

    public abstract Tensor Forward(Tensor input, in BatchContext context);
    public abstract Tensor Backward(Tensor gradOutput);

    /// Fills weights from N(0, std) with He or Xavier scaling; biases stay zero.
    protected static void InitWeights(Span<float> weights, int fanIn, int fanOut, WeightInit init, ref DeterministicRandom rng)
    {
        if (init == WeightInit.He)
        {
            double std = Math.Sqrt(2.0 / fanIn);
            for (int i = 0; i < weights.Length; i++) weights[i] = (float)(rng.NextGaussian() * std);
        }
        else
        {
            double limit = Math.Sqrt(6.0 / (fanIn + fanOut));
            for (int i = 0; i < weights.Length; i++) weights[i] = (float)((2 * rng.NextDouble() - 1) * limit);
        }
    }
}
