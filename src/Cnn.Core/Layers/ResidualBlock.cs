using DistTrain.Cnn.Kernels;

namespace DistTrain.Cnn.Layers;

/// The basic residual block of the ResNet paper's CIFAR networks (He et al. 2016): y = relu(F(x)
/// + S(x)), F = conv 3x3 (stride s) -> batch norm -> relu -> conv 3x3 -> batch norm, and S the
/// identity when the block keeps the shape, else a 1x1 convolution of stride s and a batch norm
/// (the "projection" shortcut). One entry of a model's layer list, {"type": "residual", "filters":
/// 32, "stride": 2}, over one slice of the parameter vector that its parts share out in the order
/// conv1, bn1, conv2, bn2[, shortcut conv, shortcut bn]; checkpoint names are "res3.conv1.weight" etc.
public sealed class ResidualBlock : Layer
{
    public ResidualBlock(int filters, int stride = 1)
    {
        if (filters < 1) throw new ArgumentException($"filters must be >= 1, got {filters}");
        if (stride < 1) throw new ArgumentException($"stride must be >= 1, got {stride}");
        Filters = filters;
        Stride = stride;
    }

    public int Filters { get; }
    public int Stride { get; }
    /// The parts in parameter order, with their names; the shortcut's only when it projects.
    (string Name, Layer Layer)[] _parts = [];
    Conv2D _conv1 = null!, _conv2 = null!;
    BatchNorm _bn1 = null!, _bn2 = null!;
    ReLU _relu1 = null!, _relu2 = null!;
    Conv2D? _shortcutConv;
    BatchNorm? _shortcutBn;
    Tensor? _sum, _gradInput;

    public bool Projects => _shortcutConv is not null;

    /// The parts, for exporting the block: main path conv1, bn1, conv2, bn2 (with a ReLU between the
    /// batch norms and after the sum); the shortcut's conv and batch norm when it projects.
    internal (Conv2D Conv1, BatchNorm Bn1, Conv2D Conv2, BatchNorm Bn2, Conv2D? ShortcutConv, BatchNorm? ShortcutBn) Parts =>
        (_conv1, _bn1, _conv2, _bn2, _shortcutConv, _shortcutBn);

    internal override void Build(SampleShape input)
    {
        base.Build(input);
        _conv1 = new Conv2D(Filters, 3, Stride, 1);
        _bn1 = new BatchNorm();
        _relu1 = new ReLU();
        _conv2 = new Conv2D(Filters, 3, 1, 1);
        _bn2 = new BatchNorm();
        _relu2 = new ReLU();
        var shape = input;
        foreach (var part in new Layer[] { _conv1, _bn1, _relu1, _conv2, _bn2 }) { part.Build(shape); shape = part.OutputShape; }
        _relu2.Build(shape);
        List<(string, Layer)> parts = [("conv1", _conv1), ("bn1", _bn1), ("conv2", _conv2), ("bn2", _bn2)];
        if (Stride != 1 || input.C != Filters)
        {
            _shortcutConv = new Conv2D(Filters, 1, Stride, 0);
            _shortcutConv.Build(input);
            _shortcutBn = new BatchNorm();
            _shortcutBn.Build(_shortcutConv.OutputShape);
            if (_shortcutBn.OutputShape != shape)
                throw new ArgumentException($"the shortcut gives {_shortcutBn.OutputShape}, the block {shape}");
            parts.AddRange([("shortcut.conv", _shortcutConv), ("shortcut.bn", _shortcutBn)]);
        }
        _parts = [.. parts];
        foreach (var (_, part) in _parts) part.Init = WeightInit.He;
    }

    protected override SampleShape OutputShapeFor(SampleShape input)
    {
        var g = new ConvGeometry(input.C, input.H, input.W, 3, Stride, 1);
        if (g.OutHeight < 1 || g.OutWidth < 1) throw new ArgumentException($"a stride of {Stride} leaves nothing of {input}");
        return new SampleShape(Filters, g.OutHeight, g.OutWidth);
    }

    public override int ParameterCount => _parts.Sum(p => p.Layer.ParameterCount);

    public override IEnumerable<(string Suffix, int[] Shape)> ParameterLayout =>
        _parts.SelectMany(p => p.Layer.ParameterLayout.Select(v => ($"{p.Name}.{v.Suffix}", v.Shape)));

    public override IEnumerable<(int Offset, int Length)> StatisticRanges
    {
        get
        {
            int at = 0;
            foreach (var (_, part) in _parts)
            {
                foreach (var (offset, length) in part.StatisticRanges) yield return (at + offset, length);
                at += part.ParameterCount;
            }
        }
    }

    internal override void Bind(float[] parameters, float[] gradients, int offset)
    {
        base.Bind(parameters, gradients, offset);
        foreach (var (_, part) in _parts)
        {
            part.Bind(parameters, gradients, offset);
            offset += part.ParameterCount;
        }
    }

    public override void Initialize(ref DeterministicRandom rng)
    {
        foreach (var (_, part) in _parts) part.Initialize(ref rng);
    }

    public override Tensor Forward(Tensor input, in BatchContext context)
    {
        var main = _bn2.Forward(_conv2.Forward(_relu1.Forward(_bn1.Forward(_conv1.Forward(input, context), context), context), context), context);
        var shortcut = _shortcutConv is null ? input : _shortcutBn!.Forward(_shortcutConv.Forward(input, context), context);
        var sum = Tensor.Ensure(ref _sum, OutputShape, input.N);
        main.Span.CopyTo(sum.Span);
        Add(sum.Span, shortcut.Span);
        return _relu2.Forward(sum, context);
    }

    public override Tensor Backward(Tensor gradOutput)
    {
        var gradSum = _relu2.Backward(gradOutput);
        _conv1.ComputeInputGradient = ComputeInputGradient;
        var gradMain = _conv1.Backward(_bn1.Backward(_relu1.Backward(_conv2.Backward(_bn2.Backward(gradSum)))));
        var gradInput = Tensor.Ensure(ref _gradInput, InputShape, gradOutput.N);
        if (!ComputeInputGradient)
        {
            if (_shortcutConv is not null) { _shortcutConv.ComputeInputGradient = false; _shortcutConv.Backward(_shortcutBn!.Backward(gradSum)); }
            return gradInput;
        }
        gradMain.Span.CopyTo(gradInput.Span);
        if (_shortcutConv is null) Add(gradInput.Span, gradSum.Span);
        else
        {
            _shortcutConv.ComputeInputGradient = true;
            Add(gradInput.Span, _shortcutConv.Backward(_shortcutBn!.Backward(gradSum)).Span);
        }
        return gradInput;
    }

    static unsafe void Add(Span<float> dst, ReadOnlySpan<float> src)
    {
        fixed (float* d = dst)
        fixed (float* s = src)
            Elementwise.AddInto(d, s, dst.Length);
    }
}
