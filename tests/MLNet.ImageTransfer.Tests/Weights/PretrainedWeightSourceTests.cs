using System.Text.Json;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>What "weights" may be — a path, a name, an alias, <c>imagenet</c> — and where each resolves to.</summary>
public class PretrainedWeightSourceTests
{
    /// <summary>Sets environment variables for the life of the scope (the tests run one at a time), then restores them.</summary>
    internal sealed class EnvironmentScope : IDisposable
    {
        readonly Dictionary<string, string?> _saved = [];

        public EnvironmentScope(params (string Name, string? Value)[] variables)
        {
            foreach (var (name, value) in variables)
            {
                _saved[name] = Environment.GetEnvironmentVariable(name);
                Environment.SetEnvironmentVariable(name, value);
            }
        }

        public void Dispose()
        {
            foreach (var (name, value) in _saved) Environment.SetEnvironmentVariable(name, value);
        }
    }

    static PretrainedWeightOptions Offline(string cache) => new() { CacheDirectory = cache, Offline = true };

    [Fact]
    public void Imagenet_means_the_default_entry_of_the_architecture()
    {
        Assert.Equal("resnet50.tv2_in1k", PretrainedWeightSource.Select("imagenet", "resnet50").Name);
        Assert.Equal("resnet18.tv_in1k", PretrainedWeightSource.Select("ImageNet", "ResNet18").Name);
        Assert.Equal("densenet121_keras.keras_in1k", PretrainedWeightSource.Select("imagenet", "densenet121_keras").Name);
        Assert.Equal("vgg16.tv_in1k", PretrainedWeightSource.Select("IMAGENET", "vgg16").Name);

        var none = Assert.Throws<ArgumentException>(() => PretrainedWeightSource.Select("imagenet"));
        Assert.Contains("architecture", none.Message);
        Assert.Contains("--arch", none.Message);
        var unknown = Assert.Throws<ArgumentException>(() => PretrainedWeightSource.Select("imagenet", "alexnet"));
        Assert.Contains("resnet50", unknown.Message);

        // End to end without a network: offline, the error names the URL and the exact file to put in the cache.
        var cache = TestData.NewTempDir("resolve-imagenet");
        var e = Assert.Throws<WeightDownloadException>(() => PretrainedWeightSource.Resolve("imagenet", "resnet50", Offline(cache)));
        Assert.Equal(Path.Combine(cache, "resnet50-11ad3fa6.pth"), e.ManualPath);
        Assert.Contains("https://download.pytorch.org/models/resnet50-11ad3fa6.pth", e.Message);
        Assert.Contains(e.ManualPath, e.Message);
    }

    [Fact]
    public void Names_aliases_and_architecture_names_select_entries_that_must_fit_the_architecture()
    {
        Assert.Equal("resnet50.tv2_in1k", PretrainedWeightSource.Select("ResNet50_Weights.DEFAULT").Name);
        Assert.Equal("resnet50.tv_in1k", PretrainedWeightSource.Select("resnet50.TV_IN1K", "resnet50").Name);
        Assert.Equal("resnet18_mlnet.mlnet_in1k", PretrainedWeightSource.Select("mlnet-resnet18").Name);
        Assert.Equal("resnet50.tv2_in1k", PretrainedWeightSource.Select("resnet50").Name); // timm: an architecture name means its default
        // Keras files start the architecture they were asked for in its Keras variant (the trainer adapts), VGG as it is.
        Assert.Equal("resnet50_keras.keras_in1k", PretrainedWeightSource.Select("resnet50_keras.keras_in1k", "resnet50").Name);
        Assert.Equal("vgg16.keras_notop_in1k", PretrainedWeightSource.Select("vgg16.keras_notop_in1k", "vgg16").Name);

        Assert.Throws<ArgumentException>(() => PretrainedWeightSource.Select("resnet50.tv_in1k", "resnet50_keras"));
        var mismatch = Assert.Throws<ArgumentException>(() => PretrainedWeightSource.Select("densenet121.tv_in1k", "resnet50"));
        Assert.Contains("densenet121", mismatch.Message);
        Assert.Contains("resnet50.tv2_in1k", mismatch.Message);

        var unknown = Assert.Throws<ArgumentException>(() => PretrainedWeightSource.Select("resnet50.tv3_in1k"));
        Assert.Contains("resnet50.tv2_in1k", unknown.Message);
        Assert.Throws<FileNotFoundException>(() => PretrainedWeightSource.Resolve("no/such/weights.pth"));
        Assert.Throws<FileNotFoundException>(() => PretrainedWeightSource.Resolve("missing.safetensors"));
    }

    [Fact]
    public void A_path_is_returned_as_it_is_and_identified_by_its_torchvision_name_or_its_content()
    {
        var dir = TestData.NewTempDir("resolve-path");
        var unknown = Path.Combine(dir, "mine.pth");
        File.WriteAllBytes(unknown, WeightDownloadTests.Content(1000));
        var r = PretrainedWeightSource.Resolve(unknown, "resnet50");
        Assert.Equal(unknown, r.Path);
        Assert.Equal(WeightOrigin.File, r.Origin);
        Assert.Null(r.Entry);

        // torch.hub's file name: identified without reading it (the name carries the start of its SHA-256).
        var hub = Path.Combine(dir, "resnet50-11ad3fa6.pth");
        File.WriteAllBytes(hub, [1, 2, 3]);
        var byName = PretrainedWeightSource.Resolve(hub);
        Assert.Equal("resnet50.tv2_in1k", byName.Entry?.Name);
        Assert.Equal(232, byName.Preprocessing!.ResizeShorterSide);

        // Renamed: identified by content against the published hashes (here of an entry from an extra catalog file).
        var content = WeightDownloadTests.Content(5000, seed: 9);
        var catalog = Path.Combine(dir, "extra-catalog.json");
        WriteCatalog(catalog, WeightDownloadTests.Entry("https://example.invalid/tiny-weights.bin", content) with { Name = "tiny.extra_in1k" });
        var renamed = Path.Combine(dir, "renamed.bin");
        File.WriteAllBytes(renamed, content);
        using (new EnvironmentScope((PretrainedWeightCatalog.EnvironmentVariable, catalog)))
        {
            Assert.Equal("tiny.extra_in1k", PretrainedWeightSource.Resolve(renamed).Entry?.Name);
            Assert.Contains(PretrainedWeightCatalog.Entries, e => e.Name == "resnet50.tv2_in1k");
        }
        Assert.Null(PretrainedWeightCatalog.TryFind("tiny.extra_in1k"));
    }

    [Fact]
    public void A_name_downloads_into_the_cache_and_resolves_from_it_afterwards()
    {
        var content = WeightDownloadTests.Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, content));
        var dir = TestData.NewTempDir("resolve-download");
        var catalog = Path.Combine(dir, "catalog.json");
        WriteCatalog(catalog, WeightDownloadTests.Entry(server.Url("tiny-weights.bin"), content) with { Name = "resnet18.loopback_in1k", Aliases = ["loopback"] });
        var cache = Path.Combine(dir, "cache");
        using var scope = new EnvironmentScope((PretrainedWeightCatalog.EnvironmentVariable, catalog), (WeightCache.EnvironmentVariable, cache),
            (WeightCache.OfflineEnvironmentVariable, null));

        var first = PretrainedWeightSource.Resolve("loopback", "resnet18");
        Assert.Equal(WeightOrigin.Download, first.Origin);
        Assert.Equal(Path.Combine(cache, "tiny-weights.bin"), first.Path);
        Assert.Equal("resnet18.loopback_in1k", first.Entry!.Name);
        Assert.Equal(content, File.ReadAllBytes(first.Path));
        Assert.Equal(first.Path, PretrainedWeightSource.FindLocal(first.Entry)!.Path);

        var second = PretrainedWeightSource.Resolve("RESNET18.LOOPBACK_IN1K");
        Assert.Equal(WeightOrigin.Cache, second.Origin);
        Assert.Equal(first.Path, second.Path);
        Assert.Single(server.Requests);
    }

    [Fact]
    public void The_package_entry_is_found_in_the_NuGet_packages_folder_or_the_application_folder()
    {
        var packages = TestData.NewTempDir("nuget-packages");
        var version = Path.Combine(packages, "microsoft.ml.dnnimagefeaturizer.resnet18", MLNetResNet18.PackageVersion);
        Directory.CreateDirectory(Path.Combine(version, "tools", "DnnImageModels", "ResNet18Onnx"));
        Directory.CreateDirectory(Path.Combine(version, "tools", "DnnImageModels", "ResNetPrepOnnx"));
        File.WriteAllBytes(Path.Combine(version, "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), [8]);
        File.WriteAllBytes(Path.Combine(version, "tools", "DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx"), [9]);
        var emptyApplication = TestData.NewTempDir("application-without-package");

        using (new EnvironmentScope(("NUGET_PACKAGES", packages)))
        {
            var r = PretrainedWeightSource.Resolve("mlnet-resnet18", options: new PretrainedWeightOptions { ApplicationDirectory = emptyApplication });
            Assert.Equal(WeightOrigin.Package, r.Origin);
            Assert.Equal(Path.Combine(version, "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), r.Path);
            Assert.Equal([Path.Combine(version, "tools", "DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx")], r.Companions);
            Assert.Equal("resnet18_mlnet.mlnet_in1k", r.Entry!.Name);
            Assert.Null(r.Preprocessing); // read from the preprocessing graph
        }

        // The application folder (where the package's build step copies DnnImageModels/) comes first.
        var application = TestData.NewTempDir("application-with-package");
        Directory.CreateDirectory(Path.Combine(application, "DnnImageModels", "ResNet18Onnx"));
        Directory.CreateDirectory(Path.Combine(application, "DnnImageModels", "ResNetPrepOnnx"));
        File.WriteAllBytes(Path.Combine(application, "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), [8]);
        File.WriteAllBytes(Path.Combine(application, "DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx"), [9]);
        var local = PretrainedWeightSource.Resolve("resnet18_mlnet.mlnet_in1k", options: new PretrainedWeightOptions { ApplicationDirectory = application, NuGetPackagesDirectory = packages });
        Assert.Equal(Path.Combine(application, "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), local.Path);
    }

    [Fact]
    public void A_missing_package_is_an_error_saying_which_package_to_add_and_where_it_looked()
    {
        var packages = TestData.NewTempDir("nuget-packages-empty");
        var application = TestData.NewTempDir("application-empty");
        using var scope = new EnvironmentScope(("NUGET_PACKAGES", packages));

        var e = Assert.Throws<FileNotFoundException>(() => PretrainedWeightSource.Resolve("mlnet-resnet18", options: new PretrainedWeightOptions { ApplicationDirectory = application }));

        Assert.Contains("dotnet add package Microsoft.ML.DnnImageFeaturizer.ResNet18", e.Message);
        Assert.Contains(Path.Combine(application, "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), e.Message);
        Assert.Contains(Path.Combine(packages, "microsoft.ml.dnnimagefeaturizer.resnet18", MLNetResNet18.PackageVersion, "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx"), e.Message);
        Assert.Null(PretrainedWeightSource.FindLocal(PretrainedWeightCatalog.Find("mlnet-resnet18"), new PretrainedWeightOptions { ApplicationDirectory = application }));
    }

    [Fact]
    public void The_cache_folder_is_the_environment_override_else_the_platform_cache_folder()
    {
        var mine = TestData.NewTempDir("cache-override");
        using (new EnvironmentScope((WeightCache.EnvironmentVariable, mine)))
        {
            Assert.Equal(mine, WeightCache.DefaultDirectory);
            Assert.Equal(mine, new WeightCache().Directory);
        }
        if (!OperatingSystem.IsWindows())
        {
            var xdg = TestData.NewTempDir("xdg-cache");
            using (new EnvironmentScope((WeightCache.EnvironmentVariable, null), ("XDG_CACHE_HOME", xdg)))
                Assert.Equal(Path.Combine(xdg, "mlnet-imagetransfer", "weights"), WeightCache.DefaultDirectory);
            using (new EnvironmentScope((WeightCache.EnvironmentVariable, null), ("XDG_CACHE_HOME", null)))
                Assert.Equal(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "mlnet-imagetransfer", "weights"), WeightCache.DefaultDirectory);
        }
    }

    /// <summary>Writes entries as an extra catalog file (the built-in catalog's JSON form).</summary>
    internal static void WriteCatalog(string path, params PretrainedWeightEntry[] entries)
    {
        var json = new
        {
            entries = entries.Select(e => new
            {
                name = e.Name,
                aliases = e.Aliases,
                architecture = e.Architecture,
                source = "torchvision",
                format = e.Format.ToString(),
                url = e.Url,
                fileName = e.FileName,
                hash = new
                {
                    algorithm = e.Hash.Algorithm switch { WeightHashAlgorithm.Sha256Prefix => "sha256-prefix", WeightHashAlgorithm.Md5 => "md5", _ => "sha256" },
                    value = e.Hash.Value,
                },
                numClasses = e.NumClasses,
                preprocessing = new { mode = e.Preprocessing.Mode, resize = e.Preprocessing.Resize, crop = e.Preprocessing.Crop },
            }),
        };
        File.WriteAllText(path, JsonSerializer.Serialize(json));
    }
}
