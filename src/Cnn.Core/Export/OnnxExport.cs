using System.Runtime.InteropServices;
using System.Text.Json;
using DistTrain.Cnn.Inference;
using DistTrain.Cnn.Layers;
using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Export;

/// A trained model as an ONNX graph (opset 13, IR version 7) that ONNX Runtime, ML.NET and the like
/// run as it is: input "pixels", float N x C x H x W with pixel values / 255 (0..1, as the images
/// were read for training); the graph normalises them with the checkpoint's per-channel mean and
/// standard deviation, runs every layer in inference form (batch norm with its running statistics,
/// dropout left out, residual blocks as convolutions, an Add and a Relu) and gives "logits", float
/// N x classes. The metadata carries the class names, mean and std as JSON. Initializers keep the
/// checkpoint's tensor names ("conv1.weight", "res4.shortcut.bn.running_var").
public static class OnnxExport
{
    public const int Opset = 13;
    public const int IrVersion = 7;
    public const string InputName = "pixels";
    public const string OutputName = "logits";

    /// The model's ONNX bytes.
    public static byte[] Build(Model model, InferenceInfo info)
    {
        var g = new Graph(model);
        var input = model.InputShape;
        g.Initializer("input.mean", [1, input.C, 1, 1], [.. info.Mean]);
        g.Initializer("input.std", [1, input.C, 1, 1], [.. info.Std]);
        string x = g.Node("Sub", [InputName, "input.mean"]);
        x = g.Node("Div", [x, "input.std"]);
        bool rank4 = true;
        foreach (var layer in model.Layers) (x, rank4) = g.Layer(layer, x, rank4);
        if (rank4) x = g.Node("Flatten", [x], attributes: [Graph.Int("axis", 1)]);
        g.Rename(x, OutputName);

        var graph = new ProtoWriter();
        foreach (var node in g.Nodes) graph.Message(1, node);
        graph.String(2, model.Name);
        foreach (var tensor in g.Initializers) graph.Message(5, tensor);
        graph.String(10, $"DistTrain model {model.Name}: {InputName} are pixel values / 255, N x {input.C} x {input.H} x {input.W}; {OutputName} are the classes' scores before softmax");
        graph.Message(11, ValueInfo(InputName, ["batch", input.C, input.H, input.W]));
        graph.Message(12, ValueInfo(OutputName, ["batch", model.OutputShape.Size]));

        var onnx = new ProtoWriter()
            .Int(1, IrVersion)
            .String(2, "DistTrain")
            .String(3, typeof(OnnxExport).Assembly.GetName().Version?.ToString(3) ?? "0")
            .Message(7, graph)
            .Message(8, new ProtoWriter().String(1, "").Int(2, Opset));
        foreach (var (key, value) in new Dictionary<string, string>
                 {
                     ["classes"] = JsonSerializer.Serialize(info.Classes), ["mean"] = JsonSerializer.Serialize(info.Mean),
                     ["std"] = JsonSerializer.Serialize(info.Std), ["input"] = $"{InputName}: float N x {input.C} x {input.H} x {input.W}, pixel / 255",
                 })
            onnx.Message(14, new ProtoWriter().String(1, key).String(2, value));
        return onnx.ToArray();
    }

    /// Writes the model to `path` through a temporary file in the same folder, flushed and renamed:
    /// a failure leaves no half-written file and an existing one as it was.
    public static void Write(string path, Model model, InferenceInfo info)
    {
        var bytes = Build(model, info);
        AtomicFile.Write(path, file => file.Write(bytes));
    }

    /// ValueInfoProto of a float tensor; a string dimension is symbolic.
    static ProtoWriter ValueInfo(string name, object[] dims)
    {
        var shape = new ProtoWriter();
        foreach (var d in dims)
            shape.Message(1, d is string symbol ? new ProtoWriter().String(2, symbol) : new ProtoWriter().Int(1, (int)d));
        var tensorType = new ProtoWriter().Int(1, 1).Message(2, shape);   // elem_type FLOAT
        return new ProtoWriter().String(1, name).Message(2, new ProtoWriter().Message(1, tensorType));
    }

    sealed class Graph(Model model)
    {
        public readonly List<ProtoWriter> Nodes = [];
        public readonly List<ProtoWriter> Initializers = [];
        readonly List<(string[] Inputs, string[] Outputs, string Op, ProtoWriter[] Attributes)> _nodes = [];
        int _values;

        public static ProtoWriter Int(string name, long value) => new ProtoWriter().String(1, name).Int(3, value).Int(20, 2);
        public static ProtoWriter Float(string name, float value) => new ProtoWriter().String(1, name).Float(2, value).Int(20, 1);
        public static ProtoWriter Ints(string name, params long[] values)
        {
            var a = new ProtoWriter().String(1, name);
            foreach (long v in values) a.Int(8, v);
            return a.Int(20, 7);
        }

        /// Adds a node with one fresh output and returns the output's name.
        public string Node(string op, string[] inputs, ProtoWriter[]? attributes = null)
        {
            string output = $"{op.ToLowerInvariant()}_{++_values}";
            _nodes.Add((inputs, [output], op, attributes ?? []));
            return output;
        }

        /// Gives the last node's output its final name, then writes the nodes.
        public void Rename(string from, string to)
        {
            foreach (var (inputs, outputs, op, attributes) in _nodes)
            {
                var node = new ProtoWriter();
                foreach (var i in inputs) node.String(1, i == from ? to : i);
                foreach (var o in outputs) node.String(2, o == from ? to : o);
                node.String(3, outputs[0] == from ? to : outputs[0]).String(4, op);
                foreach (var a in attributes) node.Message(5, a);
                Nodes.Add(node);
            }
        }

        public void Initializer(string name, long[] dims, float[] values)
        {
            var t = new ProtoWriter();
            foreach (long d in dims) t.Int(1, d);
            t.Int(2, 1).String(8, name);
            var bytes = new byte[4 * values.Length];
            for (int i = 0; i < values.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
            Initializers.Add(t.Bytes(9, bytes));
        }

        void Int64Initializer(string name, long[] values)
        {
            var t = new ProtoWriter().Int(1, values.Length).Int(2, 7).String(8, name);
            Initializers.Add(t.Bytes(9, MemoryMarshal.AsBytes(values.AsSpan())));
        }

        /// The parameter tensor `name` of the model, as an initializer of that name.
        string Parameter(string name)
        {
            var view = model.Views.FirstOrDefault(v => v.Name == name);
            if (view.Name is null) throw new InvalidOperationException($"model {model.Name} has no parameter '{name}'");
            Initializer(name, [.. view.Shape.Select(d => (long)d)], model.Parameters.AsSpan(view.Offset, view.Length).ToArray());
            return name;
        }

        public (string Value, bool Rank4) Layer(Layer layer, string x, bool rank4)
        {
            string Image(string value, SampleShape shape)
            {
                if (rank4) return value;
                string target = $"{layer.Name}.shape";
                Int64Initializer(target, [-1, shape.C, shape.H, shape.W]);
                return Node("Reshape", [value, target]);
            }
            string Rows(string value) => rank4 ? Node("Flatten", [value], [Int("axis", 1)]) : value;

            switch (layer)
            {
                case Conv2D c: return (Conv(c, layer.Name!, Image(x, layer.InputShape)), true);
                case Dense d: return (Node("Gemm", [Rows(x), Parameter($"{d.Name}.weight"), Parameter($"{d.Name}.bias")], [Int("transB", 1)]), false);
                case ReLU: return (Node("Relu", [x]), rank4);
                case Sigmoid: return (Node("Sigmoid", [x]), rank4);
                case Tanh: return (Node("Tanh", [x]), rank4);
                case Dropout: return (x, rank4);
                case Flatten: return (Rows(x), false);
                case MaxPool2D p: return (Node("MaxPool", [Image(x, layer.InputShape)], [Ints("kernel_shape", p.Size, p.Size), Ints("strides", p.Stride, p.Stride)]), true);
                case AvgPool2D p: return (Node("AveragePool", [Image(x, layer.InputShape)], [Ints("kernel_shape", p.Size, p.Size), Ints("strides", p.Stride, p.Stride)]), true);
                case BatchNorm: return (Norm(layer.Name!, x), rank4);
                case GlobalAvgPool: return (Node("GlobalAveragePool", [Image(x, layer.InputShape)]), true);
                case ResidualBlock r:
                {
                    string input = Image(x, layer.InputShape), name = layer.Name!;
                    var parts = r.Parts;
                    string main = Norm($"{name}.bn2", Conv(parts.Conv2, $"{name}.conv2", Node("Relu", [Norm($"{name}.bn1", Conv(parts.Conv1, $"{name}.conv1", input))])));
                    string shortcut = parts.ShortcutConv is { } sc ? Norm($"{name}.shortcut.bn", Conv(sc, $"{name}.shortcut.conv", input)) : input;
                    return (Node("Relu", [Node("Add", [main, shortcut])]), true);
                }
                default: throw new NotSupportedException($"layer {layer.Name} ({layer.GetType().Name}) has no ONNX form");
            }
        }

        string Conv(Conv2D c, string name, string x) =>
            Node("Conv", [x, Parameter($"{name}.weight"), Parameter($"{name}.bias")],
                 [Ints("kernel_shape", c.Kernel, c.Kernel), Ints("strides", c.Stride, c.Stride), Ints("pads", c.Padding, c.Padding, c.Padding, c.Padding)]);

        string Norm(string name, string x) =>
            Node("BatchNormalization", [x, Parameter($"{name}.weight"), Parameter($"{name}.bias"), Parameter($"{name}.running_mean"), Parameter($"{name}.running_var")],
                 [Float("epsilon", (float)BatchNorm.Epsilon)]);
    }
}
