using DistTrain.Cnn.Models;

namespace DistTrain.Cnn.Tests.Models;

public class ModelSpecTests
{
    [Fact]
    public void Lenet5_has_the_classic_shapes_and_parameter_count()
    {
        var m = Model.Create(Presets.LeNet5);
        // conv1 6*1*25+6, conv2 16*6*25+16, dense 400*120+120, 120*84+84, 84*10+10
        Assert.Equal(156 + 2416 + 48120 + 10164 + 850, m.ParameterCount);
        Assert.Equal(new SampleShape(6, 28, 28), m.Layers[0].OutputShape);
        Assert.Equal(new SampleShape(16, 5, 5), m.Layers[5].OutputShape);
        Assert.Equal(new SampleShape(10, 1, 1), m.OutputShape);
        Assert.Equal(["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias",
                      "dense2.weight", "dense2.bias", "dense3.weight", "dense3.bias"], m.Views.Select(v => v.Name));
        // The views tile the flat vector exactly, in order.
        Assert.Equal(m.ParameterCount, m.Views.Sum(v => v.Length));
        Assert.True(m.Views.Zip(m.Views.Skip(1)).All(p => p.First.Offset + p.First.Length == p.Second.Offset));
    }

    [Fact]
    public void Mnist_cnn_parameter_count()
    {
        var m = Model.Create(Presets.MnistCnn);
        Assert.Equal(320 + 18496 + 1179776 + 1290, m.ParameterCount);
        Assert.Equal(new SampleShape(64, 12, 12), m.Layers[4].OutputShape);
    }

    [Fact]
    public void Custom_model_round_trips_through_json()
    {
        var json = """
        { "name": "tiny", "input": [1, 8, 8],
          "layers": [ {"type": "conv2d", "filters": 4, "kernel": 3, "padding": 1}, {"type": "tanh"},
                      {"type": "avgpool2d", "size": 2}, {"type": "flatten"}, {"type": "dense", "units": 3, "init": "he"} ] }
        """;
        var spec = ModelSpec.FromJson(json, "tiny.json");
        var again = ModelSpec.FromJson(spec.ToJson(), "again");
        Assert.Equal(spec.ToJson(), again.ToJson());
        Assert.Equal(4 * 9 + 4 + 64 * 3 + 3, Model.Create(spec).ParameterCount);
    }

    [Theory]
    [InlineData("{", "not a valid model description")]
    [InlineData("""{"name":"x","input":[1,8],"layers":[{"type":"relu"}]}""", "\"input\" must be [channels, height, width]")]
    [InlineData("""{"name":"x","input":[1,8,8],"layers":[]}""", "\"layers\" is empty")]
    [InlineData("""{"name":"x","input":[1,8,8],"layers":[{"type":"conv2d","kernel":3}]}""", "layer 1 (conv2d): missing \"filters\"")]
    [InlineData("""{"name":"x","input":[1,8,8],"layers":[{"type":"conv2d","filters":2,"kernel":9}]}""", "layer 1 (conv2d): kernel 9 with padding 0 does not fit input 1x8x8")]
    [InlineData("""{"name":"x","input":[1,8,8],"layers":[{"type":"softmax"}]}""", "layer 1 (softmax): unknown layer type")]
    [InlineData("""{"name":"x","input":[1,8,8],"layers":[{"type":"relu","colour":1}]}""", "not a valid model description")]
    [InlineData("""{"name":"x","input":[1,8,8],"layers":[{"type":"dropout","rate":1.5}]}""", "rate must be in [0, 1)")]
    public void Bad_model_files_give_one_line_naming_the_file(string json, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => ModelSpec.FromJson(json, "model.json"));
        Assert.StartsWith("model.json: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Initialisation_is_seeded_he_for_relu_layers()
    {
        var a = Model.Create(Presets.LeNet5); a.Initialize(1);
        var b = Model.Create(Presets.LeNet5); b.Initialize(1);
        var c = Model.Create(Presets.LeNet5); c.Initialize(2);
        Assert.Equal(a.Parameters, b.Parameters);
        Assert.NotEqual(a.Parameters, c.Parameters);
        // dense1 (400 -> 120, followed by ReLU) is He: std sqrt(2/400) = 0.0707; 48000 draws give it within 2%.
        var w = a.Views.Single(v => v.Name == "dense1.weight");
        double std = Math.Sqrt(a.Parameters.AsSpan(w.Offset, w.Length).ToArray().Average(x => (double)x * x));
        Assert.InRange(std, 0.0707 * 0.98, 0.0707 * 1.02);
        Assert.True(a.Parameters.AsSpan(w.Offset + w.Length, 120).ToArray().All(x => x == 0), "biases start at zero");
    }
}
