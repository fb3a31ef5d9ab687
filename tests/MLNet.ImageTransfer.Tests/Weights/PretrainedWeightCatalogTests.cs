using System.Text.RegularExpressions;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>The catalog's data holds together: names, architectures, hashes, defaults, preprocessing and class names.</summary>
public class PretrainedWeightCatalogTests
{
    static IReadOnlyList<PretrainedWeightEntry> BuiltIn => PretrainedWeightCatalog.Entries;

    static readonly string[] PublishedArchitectures =
    [
        "densenet121", "densenet161", "densenet169", "densenet201", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        "densenet121_keras", "densenet169_keras", "densenet201_keras", "resnet50_keras", "resnet101_keras", "resnet152_keras",
    ];

    [Fact]
    public void Every_published_file_of_the_registry_s_architectures_is_listed_once()
    {
        var entries = BuiltIn;
        Assert.Equal(20, entries.Count(e => e.Source == WeightPublisher.Torchvision));
        Assert.Equal(16, entries.Count(e => e.Source == WeightPublisher.Keras));
        Assert.Equal(1, entries.Count(e => e.Source == WeightPublisher.NuGetPackage));

        var names = entries.SelectMany(e => e.Aliases.Prepend(e.Name)).ToList();
        Assert.Equal(names.Count, names.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        Assert.Equal(entries.Count, entries.Select(e => e.FileName).Distinct(StringComparer.Ordinal).Count());
        Assert.All(entries, e => Assert.Matches(@"^[a-z0-9_]+\.[a-z0-9_]+$", e.Name));
        Assert.All(entries, e => Assert.StartsWith(e.Architecture + ".", e.Name));
    }

    [Fact]
    public void Every_architecture_is_registered_except_the_package_entry_s()
    {
        foreach (var e in BuiltIn.Where(e => e.Source != WeightPublisher.NuGetPackage))
            Assert.True(Architectures.Names.Contains(e.Architecture, StringComparer.OrdinalIgnoreCase), $"{e.Name}: '{e.Architecture}' is not in the registry");
        // Every architecture with published weights has exactly one default among them.
        foreach (var architecture in PublishedArchitectures)
        {
            Assert.Contains(architecture, Architectures.Names);
            Assert.Single(BuiltIn, e => e.IsDefault && e.Architecture == architecture);
        }
        foreach (var group in BuiltIn.GroupBy(e => e.Architecture))
            Assert.True(group.Count(e => e.IsDefault) == 1, $"{group.Key}: {group.Count(e => e.IsDefault)} defaults");
    }

    [Fact]
    public void Torchvision_entries_carry_the_hash_prefix_of_their_file_name_and_torchvision_s_defaults()
    {
        var torchvision = BuiltIn.Where(e => e.Source == WeightPublisher.Torchvision).ToList();
        foreach (var e in torchvision)
        {
            Assert.StartsWith("https://download.pytorch.org/models/", e.Url);
            Assert.EndsWith("/" + e.FileName, e.Url);
            var m = Regex.Match(e.FileName, @"-([0-9a-f]{8,})\.pth$");
            Assert.True(m.Success, e.FileName);
            Assert.Equal(new WeightHash(WeightHashAlgorithm.Sha256Prefix, m.Groups[1].Value), e.Hash);
            Assert.Equal(WeightFormat.PyTorch, e.Format);
            Assert.Equal(1000, e.NumClasses);
            Assert.NotNull(e.FileSizeMB);
            Assert.NotNull(e.Top1Accuracy);
            Assert.Contains(e.Aliases, a => a.EndsWith(e.Name.EndsWith(".tv2_in1k") ? ".IMAGENET1K_V2" : ".IMAGENET1K_V1", StringComparison.Ordinal));
        }
        // torchvision's DEFAULT is V2 where V2 exists (ResNet50/101/152), else V1; V2 resizes to 232 before the 224 crop.
        foreach (var arch in new[] { "resnet50", "resnet101", "resnet152" })
        {
            Assert.Equal($"{arch}.tv2_in1k", PretrainedWeightCatalog.DefaultFor(arch)!.Name);
            Assert.Equal(new PretrainedPreprocessing("torchvision", 232, 224, "bilinear", null), PretrainedWeightCatalog.Find($"{arch}.tv2_in1k").Preprocessing);
            Assert.Equal(new PretrainedPreprocessing("torchvision", 256, 224, "bilinear", null), PretrainedWeightCatalog.Find($"{arch}.tv_in1k").Preprocessing);
        }
        Assert.Equal("resnet50-11ad3fa6.pth", PretrainedWeightCatalog.Find("resnet50.tv2_in1k").FileName);
        Assert.Equal(80.858, PretrainedWeightCatalog.Find("resnet50.tv2_in1k").Top1Accuracy);
        Assert.Equal(97.79, PretrainedWeightCatalog.Find("resnet50.tv2_in1k").FileSizeMB);
        Assert.Equal("densenet121.tv_in1k", PretrainedWeightCatalog.DefaultFor("densenet121")!.Name);
        Assert.Equal("vgg16_bn.tv_in1k", PretrainedWeightCatalog.DefaultFor("vgg16_bn")!.Name);
    }

    [Fact]
    public void Keras_entries_name_keras_md5_hashes_and_load_into_the_variant_their_layout_needs()
    {
        var keras = BuiltIn.Where(e => e.Source == WeightPublisher.Keras).ToList();
        foreach (var e in keras)
        {
            Assert.StartsWith("https://storage.googleapis.com/tensorflow/keras-applications/", e.Url);
            Assert.EndsWith("/" + e.FileName, e.Url);
            Assert.Equal(WeightHashAlgorithm.Md5, e.Hash.Algorithm);
            Assert.Matches("^[0-9a-f]{32}$", e.Hash.Value);
            Assert.Equal(WeightFormat.KerasH5, e.Format);
            bool notop = e.FileName.EndsWith("_notop.h5", StringComparison.Ordinal);
            Assert.Equal(notop, e.Name.EndsWith(".keras_notop_in1k", StringComparison.Ordinal));
            Assert.Equal(notop ? null : 1000, e.NumClasses);
            Assert.Equal(notop ? null : "imagenet-1k", e.ClassNames);
            Assert.Null(e.FileSizeMB); // Keras publishes none
            // DenseNet and ResNet files need the Keras-convention variant; VGG16/19 are torchvision's networks.
            if (e.Architecture.StartsWith("vgg", StringComparison.Ordinal)) Assert.DoesNotContain("_keras", e.Architecture);
            else Assert.EndsWith(Architectures.KerasSuffix, e.Architecture);
            Assert.Equal(e.Architecture.StartsWith("densenet", StringComparison.Ordinal) ? "torch" : "caffe", e.Preprocessing.Mode);
            Assert.Null(e.Preprocessing.Crop);
        }
        Assert.Equal("2cb95161c43110f7111970584f804107", PretrainedWeightCatalog.Find("resnet50_keras.keras_in1k").Hash.Value);
        Assert.Equal("resnet50_keras.keras_in1k", PretrainedWeightCatalog.DefaultFor("resnet50_keras")!.Name);
        Assert.Equal("vgg16.tv_in1k", PretrainedWeightCatalog.DefaultFor("vgg16")!.Name); // torchvision's stays the default of vgg16
        Assert.Equal("vgg16", PretrainedWeightCatalog.Find("vgg16.keras_notop_in1k").Architecture);
    }

    [Fact]
    public void Preprocessing_of_every_entry_agrees_with_what_the_weight_format_implies()
    {
        foreach (var e in BuiltIn.Where(e => e.Preprocessing.Mode != "onnx-graph"))
        {
            var preprocessing = e.Preprocessing.ToImagePreprocessing()!;
            var family = Architectures.Get(e.Architecture).Family;
            Assert.True(WeightPreprocessing.SameNormalization(preprocessing, WeightPreprocessing.Implied(e.Format, family)), $"{e.Name}: {preprocessing.Name}");
            Assert.Equal(224, preprocessing.ImageSize);
        }
        var v2 = PretrainedWeightCatalog.Find("resnet50.tv2_in1k").Preprocessing.ToImagePreprocessing()!;
        Assert.Equal(232, v2.ResizeShorterSide);
        Assert.Equal(ResizeMode.ShorterSideThenCenterCrop, v2.Resize);
        Assert.Equal(256, PretrainedWeightCatalog.Find("resnet50.tv_in1k").Preprocessing.ToImagePreprocessing()!.ResizeShorterSide);
        Assert.Equal(ImagePreprocessing.KerasCaffe(224), PretrainedWeightCatalog.Find("vgg16.keras_in1k").Preprocessing.ToImagePreprocessing());
        Assert.Equal(ImagePreprocessing.KerasTorch(224), PretrainedWeightCatalog.Find("densenet121_keras.keras_notop_in1k").Preprocessing.ToImagePreprocessing());
    }

    [Fact]
    public void The_package_entry_is_found_never_downloaded_and_marks_its_preprocessing_graph()
    {
        var e = PretrainedWeightCatalog.Find("mlnet-resnet18");
        Assert.Equal("resnet18_mlnet.mlnet_in1k", e.Name);
        Assert.Equal("resnet18_mlnet", e.Architecture);
        Assert.Equal(WeightPublisher.NuGetPackage, e.Source);
        Assert.Null(e.Url);
        Assert.Null(e.NumClasses);
        Assert.Equal(new NuGetPackageLocation("Microsoft.ML.DnnImageFeaturizer.ResNet18", MLNetResNet18.PackageVersion,
            new PackageFile("tools/DnnImageModels/ResNet18Onnx/ResNet18.onnx", "DnnImageModels/ResNet18Onnx/ResNet18.onnx"), e.Package!.Companions), e.Package);
        Assert.Equal([new PackageFile("tools/DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx", "DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx")], e.Package.Companions);
        Assert.Equal("onnx-graph", e.Preprocessing.Mode);
        Assert.Equal("ResNetPreprocess.onnx", e.Preprocessing.Graph);
        Assert.Null(e.Preprocessing.ToImagePreprocessing());
        Assert.True(e.IsDefault);
    }

    [Fact]
    public void ImageNet_class_names_are_torchvision_s_1000_categories_in_class_index_order()
    {
        var names = PretrainedWeightCatalog.ClassNames("imagenet-1k");
        Assert.Equal(1000, names.Count);
        Assert.Equal(1000, names.Distinct(StringComparer.Ordinal).Count());
        Assert.All(names, n => Assert.Equal(n.Trim(), n));
        Assert.Equal("tench", names[0]);
        Assert.Equal("goldfish", names[1]);
        Assert.Equal("golden retriever", names[207]);
        Assert.Equal("tabby", names[281]);
        Assert.Equal("toilet tissue", names[999]);
        Assert.Same(names, PretrainedWeightCatalog.Find("resnet50.tv2_in1k").GetClassNames());
        Assert.Null(PretrainedWeightCatalog.Find("resnet50_keras.keras_notop_in1k").GetClassNames());
        Assert.Throws<ArgumentException>(() => PretrainedWeightCatalog.ClassNames("imagenet-21k"));
    }

    [Fact]
    public void Names_are_case_insensitive_aliases_work_and_unknown_names_list_the_close_ones()
    {
        Assert.Equal("resnet50.tv2_in1k", PretrainedWeightCatalog.Find("ResNet50.TV2_IN1K").Name);
        Assert.Equal("resnet50.tv2_in1k", PretrainedWeightCatalog.Find("ResNet50_Weights.IMAGENET1K_V2").Name);
        Assert.Equal("resnet50.tv2_in1k", PretrainedWeightCatalog.Find("resnet50_weights.default").Name);
        Assert.Equal("resnet18_mlnet.mlnet_in1k", PretrainedWeightCatalog.Find("MLNET-ResNet18").Name);
        Assert.Null(PretrainedWeightCatalog.TryFind("resnet50.tv3_in1k"));

        var e = Assert.Throws<ArgumentException>(() => PretrainedWeightCatalog.Find("resnet50.tv3_in1k"));
        Assert.Contains("resnet50.tv_in1k", e.Message);
        Assert.Contains("resnet50.tv2_in1k", e.Message);
        Assert.Contains("resnet50.tv_in1k", PretrainedWeightCatalog.CloseMatches("resnt50.tv_in1k"));
        Assert.Contains("densenet121.tv_in1k", PretrainedWeightCatalog.CloseMatches("densnet121"));
    }

    [Fact]
    public void A_malformed_catalog_file_is_refused_naming_the_entry()
    {
        var dir = TestData.NewTempDir("catalog-bad");
        var path = Path.Combine(dir, "catalog.json");
        File.WriteAllText(path, """
            { "entries": [ { "name": "mine.x_in1k", "architecture": "resnet50", "source": "torchvision", "format": "PyTorch",
              "url": "https://example.invalid/mine.pth", "fileName": "mine.pth", "hash": { "algorithm": "sha256", "value": "abc" },
              "preprocessing": { "mode": "torchvision", "resize": 256, "crop": 224 } } ] }
            """);
        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeightCatalog.Load(path));
        Assert.Contains("mine.x_in1k", e.Message);
        Assert.Contains("64", e.Message);

        File.WriteAllText(path, File.ReadAllText(path).Replace("\"abc\"", "\"" + new string('a', 64) + "\"").Replace("mine.pth\", \"hash", "../mine.pth\", \"hash"));
        Assert.Contains("bare file name", Assert.Throws<InvalidDataException>(() => PretrainedWeightCatalog.Load(path)).Message);
    }
}
