using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Security;
using System.Text.RegularExpressions;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.MLNet.Persistence;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Packaging;

/// <summary>
/// The NuGet package as an ML.NET user gets it. <c>dotnet pack</c> of the library (built with this test project) into
/// a local feed; the application in tests/PackedConsumer, copied to a folder outside the repository (none of the
/// repository's Directory.* files, global.json or package versions apply there), references the package and ML.NET 6
/// through PackageReference and is built with <c>dotnet build</c>; it trains a tiny model on a class-per-folder set,
/// evaluates it with ML.NET's evaluator and saves it; a second run, a fresh process, loads the <c>.zip</c> and predicts.
/// </summary>
/// <remarks>
/// What project references hide and this catches: a dependency the package does not declare or declares at another
/// version than the one the library was compiled against (a SkiaSharp 2.88 build in an ML.NET 6 application died with
/// <c>MissingMethodException: SKBitmap.GetPixelSpan()</c>), a build step in buildTransitive/ that does not run for
/// package consumers (TorchSharp's native library would not load on Debian 12), pack warnings.
/// The package gets a version of its own per run and lands in a packages folder of its own, so no cached copy of an
/// earlier build can stand in for it; every other package comes from the user's NuGet packages folder (a fallback
/// folder, never written to) or, missing there, from nuget.org.
/// </remarks>
public class PackedConsumerTests(ITestOutputHelper output)
{
    static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(5);
    const string ConsumerName = "PackedConsumer";

    [Fact]
    public void Packed_library_trains_evaluates_saves_and_scores_in_an_MLNet_6_application()
    {
        var total = Stopwatch.StartNew();
        var repo = RepositoryRoot();
        var consumerSource = Path.Combine(repo, "tests", ConsumerName);
        var consumerProject = File.ReadAllText(Path.Combine(consumerSource, ConsumerName + ".csproj"));
        Assert.True(consumerProject.Contains($"<PackageReference Include=\"Microsoft.ML\" Version=\"{MLNetInternals.SupportedMLNetVersion}\" />"),
            $"tests/{ConsumerName}/{ConsumerName}.csproj must reference Microsoft.ML {MLNetInternals.SupportedMLNetVersion}, the version the library is built for.");

        var work = Path.Combine(Path.GetTempPath(), $"mlnet-imagetransfer-packed-consumer-{Guid.NewGuid():N}");
        Assert.False(IsUnder(work, repo), $"The temp folder {work} is inside the repository; set TMPDIR elsewhere.");
        Directory.CreateDirectory(work);
        try
        {
            // 1. The package, under a version no NuGet cache can hold yet.
            var version = $"{LibraryVersionPrefix()}-consumertest{Guid.NewGuid():N}";
            var feed = Path.Combine(work, "feed");
            var library = Path.Combine(repo, "src", "MLNet.ImageTransfer", "MLNet.ImageTransfer.csproj");
            var pack = Dotnet(repo, "pack", library, "-c", BuildConfiguration(), "--no-build", "-o", feed, $"-p:PackageVersion={version}");
            Assert.True(pack.ExitCode == 0, "dotnet pack failed:\n" + pack.Output);
            AssertNoWarnings("dotnet pack", pack.Output);
            Assert.True(File.Exists(Path.Combine(feed, $"MLNet.ImageTransfer.{version}.nupkg")), "No package in the feed:\n" + pack.Output);

            // 2. The application, outside the repository, with its own NuGet.config.
            var app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            foreach (var file in new[] { ConsumerName + ".csproj", "Program.cs" })
                File.Copy(Path.Combine(consumerSource, file), Path.Combine(app, file));
            WriteNuGetConfig(Path.Combine(app, "NuGet.config"), feed, Path.Combine(work, "packages"));
            // Nothing above this folder may reach into the build (where TMPDIR has Directory.* files of its own).
            foreach (var stopper in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
                File.WriteAllText(Path.Combine(work, stopper), "<Project />\n");
            var build = Dotnet(app, "build", "-c", "Release", $"-p:ImageTransferVersion={version}",
                // Vulnerability data from the feed is no concern of this test: no extra request, no warning that depends on the date.
                "-p:NuGetAudit=false");
            Assert.True(build.ExitCode == 0, "Building the application failed:\n" + build.Output);
            AssertNoWarnings("Building the application", build.Output);
            Assert.True(Directory.Exists(Path.Combine(work, "packages", "mlnet.imagetransfer", version.ToLowerInvariant())),
                "The application did not restore the package just packed:\n" + build.Output);

            // 3. Train, evaluate, save; then score in a fresh process.
            var data = Path.Combine(work, "data");
            var classes = SyntheticShapes.Classes.Take(3).ToArray();
            SyntheticShapes.Generate(data, imagesPerClass: 8, size: 32, seed: 5, classes);
            var images = Directory.GetFiles(data, "*.png", SearchOption.AllDirectories).Length;
            var model = Path.Combine(work, "model.zip");
            var program = Path.Combine(app, "bin", "Release", "net10.0", ConsumerName + ".dll");

            var train = Dotnet(app, program, "train", data, model);
            Assert.True(train.ExitCode == 0, $"The application's training run failed (exit code {train.ExitCode}):\n" + train.Output);
            var accuracy = Regex.Match(train.Output, @"^test accuracy (?<a>[0-9.]+)$", RegexOptions.Multiline);
            Assert.True(accuracy.Success, "No accuracy line:\n" + train.Output);
            Assert.InRange(double.Parse(accuracy.Groups["a"].Value, CultureInfo.InvariantCulture), 0, 1);
            Assert.Contains("Confusion table", train.Output);
            Assert.All(classes, c => Assert.Contains(c, train.Output));
            Assert.True(File.Exists(model), "No model file:\n" + train.Output);
            var trained = Predictions(train.Output);

            var score = Dotnet(app, program, "score", data, model);
            Assert.True(score.ExitCode == 0, $"The application's scoring run failed (exit code {score.ExitCode}):\n" + score.Output);
            var loaded = Predictions(score.Output);

            Assert.Equal(images, trained.Count);
            Assert.Equal(trained.Keys.Order(), loaded.Keys.Order());
            var maxDifference = 0.0;
            foreach (var (image, (label, scores)) in trained)
            {
                var (loadedLabel, loadedScores) = loaded[image];
                Assert.Contains(label, classes);
                Assert.Equal(label, loadedLabel);
                Assert.Equal(classes.Length, scores.Length);
                Assert.Equal(scores.Length, loadedScores.Length);
                Assert.InRange(scores.Sum(), 1 - 1e-4, 1 + 1e-4);
                for (var i = 0; i < scores.Length; i++) maxDifference = Math.Max(maxDifference, Math.Abs(scores[i] - loadedScores[i]));
            }
            Assert.True(maxDifference <= 1e-4, $"The loaded model's scores differ from the trained one's by up to {maxDifference:G3}.");
            output.WriteLine($"package {version}; {accuracy.Value}; {images} images scored alike after loading (max difference {maxDifference:G3}); {total.Elapsed.TotalSeconds:F0} s in all");
        }
        finally
        {
            // The application's output holds libtorch for every OS (well over 1 GB): never leave it behind.
            try { Directory.Delete(work, recursive: true); }
            catch (Exception e) { output.WriteLine($"Could not delete {work}: {e.Message}"); }
        }
    }

    /// <summary>"prediction PATH LABEL s1,s2,…" lines by path.</summary>
    static Dictionary<string, (string Label, double[] Scores)> Predictions(string text)
        => Regex.Matches(text, @"^prediction (?<path>\S+) (?<label>\S+) (?<scores>\S+)$", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups["path"].Value, m => (m.Groups["label"].Value,
                m.Groups["scores"].Value.Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray()));

    static void AssertNoWarnings(string step, string text)
    {
        var warnings = Regex.Matches(text, @"^.*: warning [A-Z]+[0-9]+.*$", RegexOptions.Multiline).Select(m => m.Value.Trim()).Distinct().ToList();
        Assert.True(warnings.Count == 0, $"{step} gave warnings:\n" + string.Join("\n", warnings));
    }

    static void WriteNuGetConfig(string path, string feed, string packages)
    {
        // The user's packages folder: read-only here (a fallback folder), so nothing of this test stays in it.
        var userPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        static string Xml(string value) => SecurityElement.Escape(value);
        var fallback = Directory.Exists(userPackages) ? $"""<add key="user" value="{Xml(userPackages)}" />""" : "";
        File.WriteAllText(path, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="{Xml(packages)}" />
              </config>
              <packageSources>
                <clear />
                <add key="local" value="{Xml(feed)}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="local"><package pattern="MLNet.ImageTransfer" /></packageSource>
                <packageSource key="nuget.org"><package pattern="*" /></packageSource>
              </packageSourceMapping>
              <fallbackPackageFolders>
                <clear />
                {fallback}
              </fallbackPackageFolders>
            </configuration>
            """);
    }

    /// <summary>Runs the dotnet host in <paramref name="workingDirectory"/>, without this test run's MSBuild and NuGet environment.</summary>
    (int ExitCode, string Output) Dotnet(string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo(ChildProcess.DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        var isSdkCommand = arguments[0] is "pack" or "build";
        if (isSdkCommand)
        {
            // No build server outlives the command (it would hold the output pipes open), plain console output.
            start.ArgumentList.Add("--disable-build-servers");
            start.ArgumentList.Add("-tl:off");
        }
        foreach (var name in start.Environment.Keys.ToList())
            if (name.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || name is "NUGET_PACKAGES" or "NUGET_FALLBACK_PACKAGES")
                start.Environment.Remove(name);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        start.Environment["DOTNET_CLI_UI_LANGUAGE"] = "en";

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(StepTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', start.ArgumentList)} did not finish in {StepTimeout}.");
        }
        process.WaitForExit();
        output.WriteLine($"dotnet {string.Join(' ', arguments.Take(2).Select(Path.GetFileName))}: exit code {process.ExitCode}, {clock.Elapsed.TotalSeconds:F1} s");
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>The configuration this test assembly, and so the library it references, was built in.</summary>
    static string BuildConfiguration()
        => typeof(PackedConsumerTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration is { Length: > 0 } c ? c : "Release";

    /// <summary>The library's version without prerelease label or commit: the VersionPrefix of Directory.Build.props.</summary>
    static string LibraryVersionPrefix()
    {
        var informational = typeof(ImageFolder).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        return informational.Split('+', '-')[0];
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLNet.ImageTransfer.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No MLNet.ImageTransfer.sln above {AppContext.BaseDirectory}: this test packs the library from its repository.");
    }

    static bool IsUnder(string path, string root)
    {
        var relative = Path.GetRelativePath(Path.GetFullPath(root), Path.GetFullPath(path));
        return relative != ".." && !relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }
}
