using DistTrain.Cnn.Layers;

namespace DistTrain.Cnn.Models;

/// A stack of layers over ONE flat parameter vector and ONE flat gradient vector of the same
/// length; every layer works on its own slice. Zeroing, all-reducing, checkpointing and hashing
/// the model are therefore single loops over these two arrays.
public sealed class Model
{
    Model(ModelSpec spec, SampleShape input, Layer[] layers, float[] parameters, float[] gradients, ParameterView[] views)
    {
        Spec = spec; InputShape = input; _layers = layers; Parameters = parameters; Gradients = gradients; Views = views;
        StatisticRanges = [.. layers.SelectMany(l => l.StatisticRanges.Select(r => (l.ParameterOffset + r.Offset, r.Length)))];
    }

    // Forward and Backward walk the array itself: a foreach over IReadOnlyList allocates an enumerator per pass.
    readonly Layer[] _layers;

    public ModelSpec Spec { get; }
    public string Name => Spec.Name;
    public SampleShape InputShape { get; }
    public SampleShape OutputShape => _layers[^1].OutputShape;
    public IReadOnlyList<Layer> Layers => _layers;
    public float[] Parameters { get; private set; }
    public float[] Gradients { get; }
    /// Named slices of <see cref="Parameters"/> ("conv1.weight", ...), in memory order.
    public IReadOnlyList<ParameterView> Views { get; }
    public int ParameterCount => Parameters.Length;
    /// The ranges of <see cref="Parameters"/> that hold statistics (<see cref="Layer.StatisticRanges"/>), in order.
    public IReadOnlyList<(int Offset, int Length)> StatisticRanges { get; }

    public static Model Create(ModelSpec spec) => Create(spec, shared: null);

    /// The same layers over THIS model's parameter vector, with a gradient vector and activations
    /// of their own: another thread computes micro-batches with it while the parameters stay one.
    public Model Replicate() => Create(Spec, shared: Parameters);

    /// Makes `parameters` (a vector of the same length) the model's parameters: every layer reads
    /// and the optimizer writes there from now on. The training step alternates two vectors this
    /// way, so that the one before an update is kept without being copied.
    public void UseParameters(float[] parameters)
    {
        if (parameters.Length != ParameterCount) throw new ArgumentException($"{parameters.Length} parameters for model {Name} of {ParameterCount}");
        Parameters = parameters;
        foreach (var layer in _layers) layer.Bind(parameters, Gradients, layer.ParameterOffset);
    }

    /// What a model needs, known without allocating it: its parameters (a long: one vector holds
    /// at most Array.MaxLength of them), the values its layers output per sample, and its outputs.
    public readonly record struct Footprint(long Parameters, long ActivationsPerSample, int Outputs);

    /// The model's footprint from its spec: the layers are built (shapes checked), no array is made.
    public static Footprint Measure(ModelSpec spec)
    {
        var layers = BuildLayers(spec);
        long parameters = CountParameters(layers);
        long activations = spec.Input.Aggregate(1L, (a, b) => a * b) + layers.Sum(l => (long)l.OutputShape.Size);
        return new Footprint(parameters, activations, layers[^1].OutputShape.Size);
    }

    static Model Create(ModelSpec spec, float[]? shared)
    {
        var layers = BuildLayers(spec);
        long count = CountParameters(layers);
        if (count > Array.MaxLength)
            throw new ArgumentException($"{count:N0} parameters; one vector holds at most {Array.MaxLength:N0}");
        var input = new SampleShape(spec.Input[0], spec.Input[1], spec.Input[2]);
        return Bound(spec, input, layers, shared);
    }

    /// As a long, from the tensors' shapes: Layer.ParameterCount is an int and would wrap first.
    static long CountParameters(Layer[] layers) => layers.Sum(l => l.ParameterLayout.Sum(v => v.Shape.Aggregate(1L, (a, b) => a * b)));

    static Layer[] BuildLayers(ModelSpec spec)
    {
        var input = new SampleShape(spec.Input[0], spec.Input[1], spec.Input[2]);
        var layers = new Layer[spec.Layers.Count];
        var shape = input;
        var counters = new Dictionary<string, int>();
        for (int i = 0; i < layers.Length; i++)
        {
            var ls = spec.Layers[i];
            Layer layer;
            try
            {
                layer = CreateLayer(ls);
                layer.Init = ChooseInit(spec.Layers, i);
                layer.Build(shape);
            }
            catch (ArgumentException e) { throw new ArgumentException($"layer {i + 1} ({ls.Type}): {e.Message}"); }
            string type = ls.Type.ToLowerInvariant();
            counters[type] = counters.GetValueOrDefault(type) + 1;
            layer.Name = $"{ShortName(type)}{counters[type]}";
            if (layer is Dropout d) d.Salt = i;
            layers[i] = layer;
            shape = layer.OutputShape;
        }
        layers[0].ComputeInputGradient = false;
        return layers;
    }

    static Model Bound(ModelSpec spec, SampleShape input, Layer[] layers, float[]? shared)
    {
        int total = layers.Sum(l => l.ParameterCount);
        var parameters = shared ?? new float[total];
        var gradients = new float[total];
        var views = new List<ParameterView>();
        int offset = 0;
        foreach (var layer in layers)
        {
            layer.Bind(parameters, gradients, offset);
            int o = offset;
            foreach (var (suffix, dims) in layer.ParameterLayout)
            {
                int len = dims.Aggregate(1, (a, b) => a * b);
                views.Add(new ParameterView($"{layer.Name}.{suffix}", dims, o, len));
                o += len;
            }
            offset += layer.ParameterCount;
        }
        return new Model(spec, input, layers, parameters, gradients, views.ToArray());
    }

    /// Draws all parameters from the seed: layer i uses its own stream derived from (seed, i).
    public void Initialize(ulong seed)
    {
        for (int i = 0; i < Layers.Count; i++)
        {
            var rng = new DeterministicRandom(DeterministicRandom.Derive(seed, 0x1A17, (ulong)i));
            Layers[i].Initialize(ref rng);
        }
    }

    public Tensor Forward(Tensor input, in BatchContext context)
    {
        if (input.Shape != InputShape)
            throw new ArgumentException($"model {Name}: expected input {InputShape}, got {input.Shape}");
        var x = input;
        foreach (var layer in _layers) x = layer.Forward(x, context);
        return x;
    }

    /// Back-propagates the loss gradient; parameter gradients are ADDED to <see cref="Gradients"/>.
    /// `layerDone` is called after each layer, last first: from then on that layer's slice of the
    /// gradient is final, which lets a distributed step start sending it while earlier layers compute.
    public void Backward(Tensor gradOutput, Action<Layer>? layerDone = null)
    {
        var g = gradOutput;
        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            g = _layers[i].Backward(g);
            layerDone?.Invoke(_layers[i]);
        }
    }

    public void ZeroGradients() => Array.Clear(Gradients);

    static Layer CreateLayer(LayerSpec s)
    {
        int Need(int? v, string field) => v ?? throw new ArgumentException($"missing \"{field}\"");
        return s.Type.ToLowerInvariant() switch
        {
            "conv2d" => new Conv2D(Need(s.Filters, "filters"), Need(s.Kernel, "kernel"), s.Stride ?? 1, s.Padding ?? 0),
            "maxpool2d" => new MaxPool2D(Need(s.Size, "size"), s.Stride),
            "avgpool2d" => new AvgPool2D(Need(s.Size, "size"), s.Stride),
            "dense" => new Dense(Need(s.Units, "units")),
            "relu" => new ReLU(),
            "sigmoid" => new Sigmoid(),
            "tanh" => new Tanh(),
            "flatten" => new Flatten(),
            "dropout" => new Dropout(s.Rate ?? throw new ArgumentException("missing \"rate\"")),
            "batchnorm" => new BatchNorm(),
            "globalavgpool" => new GlobalAvgPool(),
            "residual" => new ResidualBlock(Need(s.Filters, "filters"), s.Stride ?? 1),
            _ => throw new ArgumentException($"unknown layer type; expected conv2d, maxpool2d, avgpool2d, globalavgpool, dense, batchnorm, residual, relu, sigmoid, tanh, flatten or dropout"),
        };
    }

    static string ShortName(string type) => type switch
    {
        "conv2d" => "conv", "maxpool2d" => "maxpool", "avgpool2d" => "avgpool", "batchnorm" => "bn", "residual" => "res", _ => type,
    };

    /// He before ReLU, Xavier before tanh/sigmoid and for the output layer, unless the spec says.
    static WeightInit ChooseInit(IReadOnlyList<LayerSpec> layers, int index)
    {
        switch (layers[index].Init?.ToLowerInvariant())
        {
            case null: break;
            case "he": return WeightInit.He;
            case "xavier": return WeightInit.Xavier;
            default: throw new ArgumentException($"init must be \"he\" or \"xavier\", got \"{layers[index].Init}\"");
        }
        for (int j = index + 1; j < layers.Count; j++)
        {
            switch (layers[j].Type.ToLowerInvariant())
            {
                case "relu": return WeightInit.He;
                case "tanh" or "sigmoid": return WeightInit.Xavier;
                case "conv2d" or "dense": return WeightInit.Xavier;
            }
        }
        return WeightInit.Xavier;
    }
}
