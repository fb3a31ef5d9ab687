using System.Text.Json;
using MLNet.ImageTransfer.Tests.Weights;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary><c>weights list</c> and <c>weights download</c> through the real CLI process, with the cache in a temp folder.</summary>
public class WeightsCatalogCliTests
{
    static (int ExitCode, string StdOut, string StdErr) Run(Dictionary<string, string> environment, params string[] args)
        => ChildProcess.RunDotnet([Path.Combine(AppContext.BaseDirectory, "mlnet-imagetransfer.dll"), .. args], TimeSpan.FromMinutes(2), environment);

    static Dictionary<string, string> Environment(string cache, params (string, string)[] more)
    {
        var environment = new Dictionary<string, string>
        {
            [WeightCache.EnvironmentVariable] = cache,
            [WeightCache.OfflineEnvironmentVariable] = "",
            [PretrainedWeightCatalog.EnvironmentVariable] = "",
            ["NUGET_PACKAGES"] = TestData.NewTempDir("cli-no-packages"),
        };
        foreach (var (k, v) in more) environment[k] = v;
        return environment;
    }

    [Fact]
    public void Weights_list_shows_every_entry_with_its_cache_state_and_as_JSON()
    {
        var cache = TestData.NewTempDir("cli-list");
        var env = Environment(cache);

        var (code, stdout, stderr) = Run(env, "weights", "list");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("NAME", stdout);
        Assert.Contains("ACC@1", stdout);
        Assert.Contains("resnet50.tv2_in1k *", stdout);
        Assert.Contains("densenet121_keras.keras_notop_in1k", stdout);
        Assert.Contains("resnet18_mlnet.mlnet_in1k", stdout);
        Assert.Contains("97.8 MB", stdout);
        Assert.Contains(cache, stdout);

        var json = Run(env, "weights", "list", "--json");
        Assert.True(json.ExitCode == 0, json.StdErr + json.StdOut);
        using var doc = JsonDocument.Parse(json.StdOut);
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(PretrainedWeightCatalog.Entries.Count, rows.Count);
        var v2 = rows.Single(r => r.GetProperty("name").GetString() == "resnet50.tv2_in1k");
        Assert.Equal("resnet50", v2.GetProperty("architecture").GetString());
        Assert.Equal("Torchvision", v2.GetProperty("source").GetString());
        Assert.Equal(80.858, v2.GetProperty("top1Accuracy").GetDouble());
        Assert.Equal(97.79, v2.GetProperty("fileSizeMB").GetDouble());
        Assert.Equal("no", v2.GetProperty("cached").GetString());
        Assert.Equal(Path.Combine(cache, "resnet50-11ad3fa6.pth"), v2.GetProperty("path").GetString());
        Assert.True(v2.GetProperty("isDefault").GetBoolean());

        var filtered = Run(env, "weights", "list", "--arch", "resnet50");
        Assert.Contains("resnet50_keras.keras_in1k", filtered.StdOut);
        Assert.DoesNotContain("densenet", filtered.StdOut);
    }

    [Fact]
    public void Weights_download_fetches_verifies_and_prints_the_path_then_reports_it_cached()
    {
        var content = WeightDownloadTests.Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, content));
        var dir = TestData.NewTempDir("cli-download");
        var catalog = Path.Combine(dir, "catalog.json");
        PretrainedWeightSourceTests.WriteCatalog(catalog, WeightDownloadTests.Entry(server.Url("tiny-weights.bin"), content) with { Name = "resnet18.loopback_in1k" });
        var cache = Path.Combine(dir, "cache");
        var env = Environment(cache, (PretrainedWeightCatalog.EnvironmentVariable, catalog));

        var (code, stdout, stderr) = Run(env, "weights", "download", "resnet18.loopback_in1k");
        Assert.True(code == 0, stderr + stdout);
        Assert.Equal(Path.Combine(cache, "tiny-weights.bin"), stdout.Trim());
        Assert.Contains("downloaded and verified", stderr);
        Assert.Equal(content, File.ReadAllBytes(stdout.Trim()));

        var again = Run(env, "weights", "download", "resnet18.loopback_in1k");
        Assert.Equal(0, again.ExitCode);
        Assert.Contains("already in the cache", again.StdErr);
        Assert.Single(server.Requests);
        var row = Run(env, "weights", "list").StdOut.Split('\n').Single(l => l.StartsWith("resnet18.loopback_in1k", StringComparison.Ordinal));
        Assert.EndsWith("yes", row.TrimEnd());
    }

    [Fact]
    public void Weights_download_explains_offline_use_unknown_names_and_imagenet_without_an_architecture()
    {
        var cache = TestData.NewTempDir("cli-offline");
        var env = Environment(cache, (WeightCache.OfflineEnvironmentVariable, "1"));

        var offline = Run(env, "weights", "download", "imagenet", "--arch", "resnet50");
        Assert.Equal(1, offline.ExitCode);
        Assert.StartsWith("error: ", offline.StdErr);
        Assert.Contains("https://download.pytorch.org/models/resnet50-11ad3fa6.pth", offline.StdErr);
        Assert.Contains(Path.Combine(cache, "resnet50-11ad3fa6.pth"), offline.StdErr);
        Assert.Empty(offline.StdOut);

        var unknown = Run(env, "weights", "download", "resnt50.tv_in1k");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("resnet50.tv_in1k", unknown.StdErr);

        var noArch = Run(env, "weights", "download", "imagenet");
        Assert.Equal(1, noArch.ExitCode);
        Assert.Contains("--arch", noArch.StdErr);
    }

    [Fact]
    public void Weights_download_of_the_package_entry_prints_the_file_the_CLI_ships_with_offline()
    {
        // The CLI references Microsoft.ML.DnnImageFeaturizer.ResNet18, so the files are in its own folder: found there
        // first, with an empty NuGet folder and no network (the library's search order is tested beside the resolver).
        var emptyPackages = TestData.NewTempDir("cli-nuget-empty");
        var cache = TestData.NewTempDir("cli-nuget-cache");

        var found = Run(Environment(cache, ("NUGET_PACKAGES", emptyPackages)), "weights", "download", "mlnet-resnet18");
        Assert.True(found.ExitCode == 0, found.StdErr + found.StdOut);
        var path = found.StdOut.Trim();
        Assert.EndsWith(Path.Combine("DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), path);
        Assert.True(File.Exists(path), path);
        Assert.Contains("ResNetPreprocess.onnx", found.StdErr);
        Assert.Empty(Directory.GetFileSystemEntries(cache)); // nothing downloaded
    }
}
