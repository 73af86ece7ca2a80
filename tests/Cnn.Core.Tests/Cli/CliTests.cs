using System.Text.Json;
using DistTrain.Cnn.Data;

namespace DistTrain.Cnn.Tests.Cli;

/// The command-line contract of DESIGN.md: exit codes, one-line errors, the report's fields.
public sealed class CliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("disttrain-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static (int exit, string stdout, string stderr) Run(params string[] args)
    {
        // Worker processes cannot be started from the test host; the multi-process path has its own test.
        if (args.Length > 0 && args[0] == "train") args = [.. args, "--in-process"];
        return CliHarness.Run(args);
    }

    string MakeIdxFolder(int train = 96, int test = 32) => CliHarness.IdxFolder(_dir, train, test, seed: 9);

    static void AssertOneLineError(string stderr, params string[] fragments)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{stderr}");
        Assert.DoesNotContain("   at ", stderr);
        foreach (var f in fragments) Assert.Contains(f, stderr);
    }

    [Fact]
    public void Train_writes_the_report_with_every_field_of_the_contract()
    {
        var data = MakeIdxFolder();
        var report = Path.Combine(_dir, "r.json");
        var metrics = Path.Combine(_dir, "m.jsonl");
        var (exit, stdout, stderr) = Run("train", "--data", data, "--batch", "16", "--epochs", "1", "--report", report, "--metrics", metrics, "--seed", "4");
        Assert.True(exit == 0, stdout + stderr);
        using var doc = JsonDocument.Parse(File.ReadAllText(report));
        var root = doc.RootElement;
        string[] fields = ["status", "dataset", "dataset_sha256", "model", "workers", "epochs", "steps", "global_batch", "seed",
                           "final_train_loss", "test_loss", "test_accuracy", "wall_seconds", "train_images_per_second",
                           "parameter_sha256", "replicas_consistent", "worker_failures", "redone_steps"];
        Assert.Equal(fields.Order(), root.EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal("completed", root.GetProperty("status").GetString());
        Assert.Equal("lenet5", root.GetProperty("model").GetString());
        Assert.Equal(6, root.GetProperty("steps").GetInt64());           // 96 / 16
        Assert.Equal(16, root.GetProperty("global_batch").GetInt32());
        Assert.Equal(4UL, root.GetProperty("seed").GetUInt64());
        Assert.Equal(1, root.GetProperty("workers").GetInt32());
        Assert.True(root.GetProperty("replicas_consistent").GetBoolean());
        Assert.Equal(64, root.GetProperty("parameter_sha256").GetString()!.Length);
        Assert.Equal(DatasetFolder.Load(data).Sha256, root.GetProperty("dataset_sha256").GetString());
        var lines = File.ReadAllLines(metrics);
        Assert.Equal(6, lines.Count(l => l.Contains("\"event\":\"step\"")));
        Assert.All(lines.Where(l => l.Contains("\"event\":\"step\"")), l => Assert.Contains("\"allreduce_bytes\":0", l));   // one worker sends none
        Assert.Single(lines, l => l.Contains("\"event\":\"epoch\""));
        foreach (var l in lines) JsonDocument.Parse(l).Dispose();
    }

    [Fact]
    public void Same_command_twice_gives_the_same_parameter_hash()
    {
        var data = MakeIdxFolder();
        string Hash(string name)
        {
            var r = Path.Combine(_dir, name);
            Assert.Equal(0, Run("train", "--data", data, "--batch", "16", "--max-steps", "4", "--report", r).exit);
            return JsonDocument.Parse(File.ReadAllText(r)).RootElement.GetProperty("parameter_sha256").GetString()!;
        }
        Assert.Equal(Hash("a.json"), Hash("b.json"));
    }

    [Fact]
    public void Wrong_magic_exits_2_with_one_line_naming_the_file()
    {
        var data = MakeIdxFolder();
        var file = Path.Combine(data, "train-images-idx3-ubyte");
        var bytes = File.ReadAllBytes(file);
        bytes[3] = 0x01;
        File.WriteAllBytes(file, bytes);
        var (exit, _, stderr) = Run("train", "--data", data, "--max-steps", "1");
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "train-images-idx3-ubyte", "0x00000803");
    }

    [Fact]
    public void Truncated_labels_exit_2()
    {
        var data = MakeIdxFolder();
        var file = Path.Combine(data, "t10k-labels-idx1-ubyte");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..^5]);
        var (exit, _, stderr) = Run("eval", "--checkpoint", Path.Combine(_dir, "none.safetensors"), "--data", data);
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "none.safetensors");
        (exit, _, stderr) = Run("train", "--data", data, "--max-steps", "1");
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "t10k-labels-idx1-ubyte", "truncated");
    }

    [Theory]
    [InlineData("--epochs", "0", "--epochs: expected a whole number")]
    [InlineData("--lr", "abc", "--lr: expected a number")]
    [InlineData("--optimizer", "rmsprop", "--optimizer: expected sgd|momentum|adam|adamw")]
    [InlineData("--model", "vgg", "--model: expected lenet5, mnist-cnn, resnet20 or a FILE.json")]
    [InlineData("--colour", "red", "unknown option --colour")]
    [InlineData("--schedule", "linear", "--schedule: expected")]
    [InlineData("--workers", "-1", "--workers: expected a whole number")]
    [InlineData("--workers", "0", "--workers 0 needs --remote-workers K")]
    [InlineData("--allreduce", "tree", "--allreduce: expected ring|star")]
    [InlineData("--worker-wait", "0", "--worker-wait: expected a number")]
    [InlineData("--token-file", "/nonexistent/job.token", "--token-file /nonexistent/job.token: not found")]
    [InlineData("--tls-cert", "node.pfx", "--tls-cert needs --tls-ca ca.crt")]
    [InlineData("--tls-ca", "ca.crt", "--tls-ca needs --tls-cert NODE.pfx")]
    public void Bad_options_exit_2_with_one_line(string option, string value, string expected)
    {
        var data = MakeIdxFolder();
        var (exit, _, stderr) = Run("train", "--data", data, option, value);
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, expected);
    }

    [Fact]
    public void Unusable_TLS_files_or_token_file_exit_2_with_one_line()
    {
        string junk = Path.Combine(_dir, "node.pfx"), ca = Path.Combine(_dir, "ca.crt"), token = Path.Combine(_dir, "job.token"), empty = Path.Combine(_dir, "empty.token");
        File.WriteAllText(junk, "not a pkcs12 file");
        File.WriteAllText(ca, "not a certificate");
        File.WriteAllText(token, "secret\n");
        File.WriteAllText(empty, "\n");
        var (exit, _, stderr) = Run("worker", "--coordinator", "127.0.0.1:9", "--token-file", token, "--tls-cert", junk, "--tls-ca", ca);
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "--tls-cert " + junk, "cannot load it as a .pfx");
        (exit, _, stderr) = Run("worker", "--coordinator", "127.0.0.1:9", "--token-file", empty);
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "empty.token: the file is empty");
    }

    [Fact]
    public void Missing_data_folder_exits_2()
    {
        var (exit, _, stderr) = Run("train", "--data", Path.Combine(_dir, "nowhere"));
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "nowhere");
    }

    [Fact]
    public void Checkpoints_evaluate_and_a_corrupt_one_is_a_one_line_error_and_skipped_on_resume()
    {
        var data = MakeIdxFolder();
        var ckpt = Path.Combine(_dir, "ckpt");
        Assert.Equal(0, Run("train", "--data", data, "--batch", "16", "--epochs", "2", "--checkpoint-dir", ckpt).exit);
        var files = Directory.GetFiles(ckpt, "*.safetensors").Order().ToArray();
        Assert.Equal(["step-00000006.safetensors", "step-00000012.safetensors"], files.Select(Path.GetFileName));

        var (exit, stdout, _) = Run("eval", "--checkpoint", files[1], "--data", data);
        Assert.Equal(0, exit);
        Assert.Contains("test_accuracy", stdout);

        // Flip one byte in the newest checkpoint's parameters.
        var bytes = File.ReadAllBytes(files[1]);
        bytes[^3] ^= 0x40;
        File.WriteAllBytes(files[1], bytes);
        string stderr;
        (exit, _, stderr) = Run("eval", "--checkpoint", files[1], "--data", data);
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "step-00000012.safetensors");

        // --resume skips it with a warning and continues from the epoch-1 checkpoint.
        (exit, stdout, _) = Run("train", "--data", data, "--batch", "16", "--epochs", "2", "--checkpoint-dir", ckpt, "--resume");
        Assert.Equal(0, exit);
        Assert.Contains("warning: skipping checkpoint", stdout);
        Assert.Contains("resumed at step 6", stdout);
    }

    [Fact]
    public void Divergence_exits_3()
    {
        var data = MakeIdxFolder();
        var (exit, stdout, _) = Run("train", "--data", data, "--batch", "16", "--lr", "100000", "--max-steps", "6");
        Assert.Equal(3, exit);
        Assert.Contains("diverged", stdout);
    }

    [Fact]
    public void A_CIFAR_folder_trains_and_evaluates_with_the_preset_fitted_to_its_shape_and_classes()
    {
        var data = DistTrain.TestSupport.CifarFolder.Write(Path.Combine(_dir, "cifar"), DistTrain.TestSupport.CifarFolder.Synthetic(320, 64, seed: 3), CifarFile.Cifar10);
        var ckpt = Path.Combine(_dir, "ckpt");
        string Hash(string report) => JsonDocument.Parse(File.ReadAllText(report)).RootElement.GetProperty("parameter_sha256").GetString()!;
        string one = Path.Combine(_dir, "one.json"), two = Path.Combine(_dir, "two.json");
        var (exit, stdout, stderr) = Run("train", "--data", data, "--batch", "32", "--epochs", "2", "--seed", "2", "--report", one, "--checkpoint-dir", ckpt);
        Assert.True(exit == 0, stdout + stderr);
        using (var report = JsonDocument.Parse(File.ReadAllText(one)))
            // The synthetic colour classes are easy: an untrained net would score about 0.1.
            Assert.True(report.RootElement.GetProperty("test_accuracy").GetDouble() > 0.5, File.ReadAllText(one));
        (exit, stdout, stderr) = Run("train", "--data", data, "--batch", "32", "--epochs", "2", "--seed", "2", "--report", two, "--workers", "2");
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal(Hash(one), Hash(two));   // invariant 3 on colour images

        var saved = Directory.GetFiles(ckpt, "*.safetensors").Order().Last();
        (exit, stdout, _) = Run("eval", "--checkpoint", saved, "--data", data);
        Assert.Equal(0, exit);
        Assert.Contains("(64 images of cifar)", stdout);
        // The MNIST-shaped model cannot read colour images: one line, exit 2.
        var mnist = MakeIdxFolder();
        (exit, _, stderr) = Run("eval", "--checkpoint", saved, "--data", mnist);
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "expects 3x32x32 inputs", "has 1x28x28");
    }

    [Fact]
    public void A_model_file_must_fit_the_datasets_shape_and_have_an_output_per_class()
    {
        var data = DistTrain.TestSupport.CifarFolder.Write(Path.Combine(_dir, "c100"), DistTrain.TestSupport.CifarFolder.Synthetic(64, 32, seed: 5, classes: 100), CifarFile.Cifar100);
        var model = Path.Combine(_dir, "m.json");
        File.WriteAllText(model, """{ "name": "tiny", "input": [1, 28, 28], "layers": [ { "type": "dense", "units": 10 } ] }""");
        var (exit, _, stderr) = Run("train", "--data", data, "--model", model, "--max-steps", "1");
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "expects 1x28x28 inputs", "has 3x32x32");

        File.WriteAllText(model, """{ "name": "tiny", "input": [3, 32, 32], "layers": [ { "type": "dense", "units": 10 } ] }""");
        (exit, _, stderr) = Run("train", "--data", data, "--model", model, "--max-steps", "1");
        Assert.Equal(2, exit);
        AssertOneLineError(stderr, "model tiny has 10 outputs", "has 100 classes");

        // A preset takes the class count: 100 outputs.
        string report = Path.Combine(_dir, "r.json");
        string output;
        (exit, output, stderr) = Run("train", "--data", data, "--model", "mnist-cnn", "--batch", "16", "--max-steps", "2", "--report", report);
        Assert.True(exit == 0, output + stderr);
    }

    [Fact]
    public void Augmentation_gives_one_hash_for_any_worker_count_and_bad_specs_are_one_line()
    {
        var data = DistTrain.TestSupport.CifarFolder.Write(Path.Combine(_dir, "cifar"), DistTrain.TestSupport.CifarFolder.Synthetic(192, 32, seed: 4), CifarFile.Cifar10);
        string Hash(params string[] extra)
        {
            string report = Path.Combine(_dir, $"{Guid.NewGuid():N}.json");
            var (exit, stdout, stderr) = Run(["train", "--data", data, "--batch", "32", "--epochs", "1", "--seed", "3", "--report", report, .. extra]);
            Assert.True(exit == 0, stdout + stderr);
            return JsonDocument.Parse(File.ReadAllText(report)).RootElement.GetProperty("parameter_sha256").GetString()!;
        }
        string one = Hash("--augment", "crop:4,flip");
        Assert.Equal(one, Hash("--augment", "crop:4,flip", "--workers", "3"));
        Assert.NotEqual(one, Hash());   // it does change what is trained on

        var (code, _, err) = Run("train", "--data", data, "--augment", "rotate");
        Assert.Equal(2, code);
        AssertOneLineError(err, "--augment: 'rotate': expected none, flip, crop:P or crop:P,flip");
        (code, _, err) = Run("train", "--data", data, "--augment", "crop:32");
        Assert.Equal(2, code);
        AssertOneLineError(err, "a padding of 32 pixels would shift 32x32 images out of view");
    }

    [Fact]
    public void An_image_folder_trains_and_evaluates_through_the_command_line()
    {
        var data = DistTrain.TestSupport.ImageFolderWriter.Write(Path.Combine(_dir, "images"), DistTrain.TestSupport.CifarFolder.Synthetic(192, 40, seed: 6),
                                                                 ["apple", "bee", "car", "dune", "eel", "fig", "gnu", "hat", "ivy", "jar"]);
        var ckpt = Path.Combine(_dir, "ckpt");
        string one = Path.Combine(_dir, "one.json"), two = Path.Combine(_dir, "two.json");
        var (exit, stdout, stderr) = Run("train", "--data", data, "--batch", "32", "--epochs", "2", "--seed", "8", "--augment", "crop:2,flip", "--report", one, "--checkpoint-dir", ckpt);
        Assert.True(exit == 0, stdout + stderr);
        (exit, stdout, stderr) = Run("train", "--data", data, "--batch", "32", "--epochs", "2", "--seed", "8", "--augment", "crop:2,flip", "--report", two, "--workers", "2");
        Assert.True(exit == 0, stdout + stderr);
        using var a = JsonDocument.Parse(File.ReadAllText(one));
        using var b = JsonDocument.Parse(File.ReadAllText(two));
        Assert.Equal(a.RootElement.GetProperty("parameter_sha256").GetString(), b.RootElement.GetProperty("parameter_sha256").GetString());
        Assert.Equal("images", a.RootElement.GetProperty("dataset").GetString());
        (exit, stdout, _) = Run("eval", "--checkpoint", Directory.GetFiles(ckpt, "*.safetensors").Order().Last(), "--data", data);
        Assert.Equal(0, exit);
        Assert.Contains("(40 images of images)", stdout);
    }

    [Fact]
    public void ResNet20_with_batch_norm_and_augmentation_gives_one_hash_for_one_and_three_workers()
    {
        var data = DistTrain.TestSupport.CifarFolder.Write(Path.Combine(_dir, "cifar"), DistTrain.TestSupport.CifarFolder.Synthetic(128, 16, seed: 9), CifarFile.Cifar10);
        string Hash(string workers, params string[] augment)
        {
            string report = Path.Combine(_dir, $"{Guid.NewGuid():N}.json");
            var (exit, stdout, stderr) = Run(["train", "--data", data, "--model", "resnet20", "--batch", "32", "--max-steps", "3", .. augment,
                                              "--workers", workers, "--report", report]);
            Assert.True(exit == 0, stdout + stderr);
            return JsonDocument.Parse(File.ReadAllText(report)).RootElement.GetProperty("parameter_sha256").GetString()!;
        }
        string one = Hash("1", "--augment", "crop:4,flip");
        Assert.Equal(one, Hash("2", "--augment", "crop:4,flip"));
        Assert.Equal(one, Hash("3", "--augment", "crop:4,flip"));
        // resnet20's recipe on 32 x 32 colour images is that augmentation; --augment none turns it off.
        Assert.Equal(one, Hash("1"));
        Assert.NotEqual(one, Hash("1", "--augment", "none"));
    }
}
