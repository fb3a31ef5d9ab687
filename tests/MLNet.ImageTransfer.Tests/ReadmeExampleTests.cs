using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using MLNet.ImageTransfer.MLNet.Persistence;

namespace MLNet.ImageTransfer.Tests;

/// <summary>README.md's C# example must compile against the library as it is, and its package versions be the ones the library is built with.</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void Readme_example_compiles()
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        var match = Regex.Match(readme, @"<!-- example:begin -->\s*```csharp\s*(?<code>.*?)```\s*<!-- example:end -->", RegexOptions.Singleline);
        Assert.True(match.Success, "README.md has no example between <!-- example:begin --> and <!-- example:end -->.");

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
        Assert.True(result.Success, "README example does not compile:\n" + string.Join("\n", errors));
    }

    [Fact]
    public void Readme_package_versions_are_the_ones_the_library_is_built_with()
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        string Version(string package)
        {
            var m = Regex.Match(readme, $"<PackageReference Include=\"{Regex.Escape(package)}\" Version=\"(?<v>[^\"]+)\"");
            Assert.True(m.Success, $"README.md has no PackageReference to {package}.");
            return m.Groups["v"].Value;
        }
        // The ML.NET version: Directory.Packages.props' MLNetVersion, which the library carries as metadata.
        Assert.Equal(MLNetInternals.SupportedMLNetVersion, Version("Microsoft.ML"));
        Assert.Equal(MLNetInternals.SupportedMLNetVersion, Version("Microsoft.ML.ImageAnalytics"));
        var onnxRuntime = typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.StartsWith(Version("Microsoft.ML.OnnxRuntime") + "+", onnxRuntime);
    }
}
