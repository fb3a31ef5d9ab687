using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.MLNet.Persistence;

namespace MLNet.ImageTransfer.Tests;

/// <summary>
/// The C# examples of README.md and of the package's readme (src/MLNet.ImageTransfer/PACKAGE.md) must compile against
/// the library as it is, and their package versions be the ones the library is built with.
/// </summary>
public class ReadmeExampleTests
{
    [Theory]
    [InlineData("README.md")]
    [InlineData("PACKAGE.md")]
    public void Readme_example_compiles(string file)
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, file));
        var match = Regex.Match(readme, @"<!-- example:begin -->\s*```csharp\s*(?<code>.*?)```\s*<!-- example:end -->", RegexOptions.Singleline);
        Assert.True(match.Success, $"{file} has no example between <!-- example:begin --> and <!-- example:end -->.");

        var tree = CSharpSyntaxTree.ParseText(match.Groups["code"].Value, new CSharpParseOptions(LanguageVersion.Latest));
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.GetFiles(AppContext.BaseDirectory, "*.dll"))
            .Where(p => !p.EndsWith("MLNet.ImageTransfer.Tests.dll", StringComparison.Ordinal))
            .DistinctBy(Path.GetFileName)
            .Select(p => MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create("ReadmeExample", [tree], references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var output = new MemoryStream();
        var result = compilation.Emit(output);
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        Assert.True(result.Success, $"{file} example does not compile:\n" + string.Join("\n", errors));
    }

    [Fact]
    public void Readme_package_versions_are_the_ones_the_library_is_built_with()
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        // The ML.NET version: Directory.Packages.props' MLNetVersion, which the library carries as metadata.
        Assert.All(Versions(readme, "Microsoft.ML"), v => Assert.Equal(MLNetInternals.SupportedMLNetVersion, v));
        Assert.All(Versions(readme, "Microsoft.ML.ImageAnalytics"), v => Assert.Equal(MLNetInternals.SupportedMLNetVersion, v));
        var onnxRuntime = typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.All(Versions(readme, "Microsoft.ML.OnnxRuntime"), v => Assert.StartsWith(v + "+", onnxRuntime));
        Assert.All(Versions(readme, "MLNet.ImageTransfer"), v => Assert.Equal(LibraryVersion, v));
    }

    [Fact]
    public void Package_readme_versions_are_the_ones_the_library_is_built_with()
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "PACKAGE.md"));
        Assert.All(Versions(readme, "Microsoft.ML"), v => Assert.Equal(MLNetInternals.SupportedMLNetVersion, v));
        Assert.All(Versions(readme, "MLNet.ImageTransfer"), v => Assert.Equal(LibraryVersion, v));
    }

    /// <summary>The library's version as packed (Directory.Build.props' VersionPrefix), without the commit.</summary>
    static string LibraryVersion => typeof(ImageFolder).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];

    /// <summary>The Version of every PackageReference to <paramref name="package"/>; at least one must exist.</summary>
    static List<string> Versions(string text, string package)
    {
        var versions = Regex.Matches(text, $"<PackageReference Include=\"{Regex.Escape(package)}\" Version=\"(?<v>[^\"]+)\"")
            .Select(m => m.Groups["v"].Value).ToList();
        Assert.True(versions.Count > 0, $"No PackageReference to {package}.");
        return versions;
    }
}
