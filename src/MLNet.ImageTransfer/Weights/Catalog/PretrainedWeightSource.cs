using MLNet.ImageTransfer.Models;
using System.Text.RegularExpressions;

namespace MLNet.ImageTransfer.Weights;

/// <summary>How a <see cref="ResolvedWeights"/> file was obtained.</summary>
public enum WeightOrigin
{
    /// <summary>A path given by the caller, used as it is.</summary>
    File,
    /// <summary>Already in the download cache (verified).</summary>
    Cache,
    /// <summary>Downloaded now (and verified).</summary>
    Download,
    /// <summary>Found in a NuGet package (the application folder or the NuGet packages folder).</summary>
    Package,
}

/// <summary>
/// A local weight file and, when it is a published one, its catalog entry — so that what the file is (preprocessing,
/// classes, the architecture variant it loads into) is known from what identifies the file, not from its format.
/// </summary>
/// <param name="Path">The file to open (<see cref="PretrainedWeightFile.Open"/>).</param>
/// <param name="Entry">The catalog entry, or null for a file the catalog does not know.</param>
/// <param name="Origin">A given path, the cache, a download now, or a NuGet package.</param>
/// <param name="Companions">Files that belong beside it (the NuGet ResNet18's <c>ResNetPreprocess.onnx</c>), full paths.</param>
public sealed record ResolvedWeights(string Path, PretrainedWeightEntry? Entry, WeightOrigin Origin, IReadOnlyList<string> Companions)
{
    /// <summary>The entry's preprocessing as the library's, or null (unknown file, or a preprocessing graph to read).</summary>
    public Data.ImagePreprocessing? Preprocessing => Entry?.Preprocessing.ToImagePreprocessing();
}

/// <summary>
/// Turns what a user writes for "weights" into a local file: a path (used as it is, and identified when it is a
/// published file), a catalog name or alias (<c>resnet50.tv2_in1k</c>, <c>ResNet50_Weights.IMAGENET1K_V2</c>,
/// <c>mlnet-resnet18</c>), a bare architecture name (its default entry, as timm's <c>resnet50</c>), or <c>imagenet</c>
/// (the default entry of the chosen architecture, as Keras' <c>weights="imagenet"</c>). Downloadable entries go through
/// the <see cref="WeightCache"/>; NuGet package entries are found, never downloaded.
/// </summary>
public static partial class PretrainedWeightSource
{
    /// <summary>Resolves <paramref name="weights"/> to a local file (see the class remarks).</summary>
    /// <param name="weights">A file path, a catalog name or alias, an architecture name, or <c>imagenet</c> (case-insensitive).</param>
    /// <param name="architecture">The architecture being built: required for <c>imagenet</c>; when given, a catalog entry must fit it.</param>
    /// <param name="options">Cache folder, progress, offline use, package folders; null for the defaults.</param>
    /// <param name="cancellationToken">Stops a download; what was received is kept and resumed next time.</param>
    /// <exception cref="ArgumentException">Unknown name (the message lists the close ones), <c>imagenet</c> without an architecture, or weights for another architecture.</exception>
    /// <exception cref="FileNotFoundException">A path that does not exist, or a NuGet package that is not installed (the message says how to add it).</exception>
    /// <exception cref="WeightDownloadException">The file could not be downloaded; the message says where to put it by hand.</exception>
    public static ResolvedWeights Resolve(string weights, string? architecture = null, PretrainedWeightOptions? options = null, CancellationToken cancellationToken = default)
        => ResolveAsync(weights, architecture, options, cancellationToken).GetAwaiter().GetResult();

    /// <inheritdoc cref="Resolve"/>
    public static async Task<ResolvedWeights> ResolveAsync(string weights, string? architecture = null, PretrainedWeightOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(weights);
        options ??= new PretrainedWeightOptions();
        if (File.Exists(weights))
            return new ResolvedWeights(System.IO.Path.GetFullPath(weights), Identify(weights), WeightOrigin.File, []);
        var entry = Select(weights.Trim(), architecture);
        if (entry.Source == WeightPublisher.NuGetPackage) return Locate(entry, options);
        var (path, downloaded) = await new WeightCache(options.CacheDirectory).FetchAsync(entry, options, cancellationToken).ConfigureAwait(false);
        return new ResolvedWeights(path, entry, downloaded ? WeightOrigin.Download : WeightOrigin.Cache, []);
    }

    /// <summary>The catalog entry a name means for an architecture, without fetching anything.</summary>
    /// <exception cref="ArgumentException">As <see cref="Resolve"/>; also for something that looks like a path but is no file.</exception>
    public static PretrainedWeightEntry Select(string weights, string? architecture = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(weights);
        PretrainedWeightEntry? entry;
        if (weights.Equals(PretrainedWeightCatalog.ImageNet, StringComparison.OrdinalIgnoreCase))
        {
            if (string.IsNullOrWhiteSpace(architecture))
                throw new ArgumentException($"Weights '{weights}' means the default ImageNet weights of the chosen architecture, and no architecture was given. " +
                    "Choose the architecture (Architecture / --arch), or name the weights, e.g. resnet50.tv2_in1k ('mlnet-imagetransfer weights list').");
            entry = PretrainedWeightCatalog.DefaultFor(architecture)
                ?? throw new ArgumentException($"The catalog has no published ImageNet weights for '{architecture}'. " +
                    $"Architectures with weights: {string.Join(", ", PretrainedWeightCatalog.ArchitecturesWithWeights)}.");
        }
        else
        {
            entry = PretrainedWeightCatalog.TryFind(weights) ?? PretrainedWeightCatalog.DefaultFor(weights);
            if (entry is null)
            {
                if (LooksLikePath(weights))
                    throw new FileNotFoundException($"Pretrained weights file '{weights}' does not exist (nor is it a catalog name).", weights);
                throw new ArgumentException($"Unknown pretrained weights '{weights}': neither a file nor a catalog name. {PretrainedWeightCatalog.Suggest(weights)}");
            }
        }
        if (!string.IsNullOrWhiteSpace(architecture) && !PretrainedWeightCatalog.Fits(entry.Architecture, architecture))
            throw new ArgumentException($"Weights '{entry.Name}' are for {entry.Architecture}, not {architecture}. " +
                $"For {architecture}: {string.Join(", ", PretrainedWeightCatalog.Entries.Where(e => PretrainedWeightCatalog.Fits(e.Architecture, architecture)).Select(e => e.Name).DefaultIfEmpty("none in the catalog"))}.");
        return entry;
    }

    /// <summary>
    /// The entry's file if it is on this machine already — verified in the download cache, or in its NuGet package —
    /// without downloading or hashing anything; else null.
    /// </summary>
    public static ResolvedWeights? FindLocal(PretrainedWeightEntry entry, PretrainedWeightOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(entry);
        options ??= new PretrainedWeightOptions();
        if (entry.Source == WeightPublisher.NuGetPackage)
        {
            try { return Locate(entry, options); }
            catch (FileNotFoundException) { return null; }
        }
        var cache = new WeightCache(options.CacheDirectory);
        return cache.StateOf(entry) == WeightCacheState.Verified ? new ResolvedWeights(cache.PathFor(entry), entry, WeightOrigin.Cache, []) : null;
    }

    /// <summary>
    /// The architecture that <paramref name="weights"/> holds: read from a file's keys and shapes (any format), or the
    /// architecture a catalog name is published for. Null for <c>imagenet</c> and other names that leave the choice to
    /// the caller, and for files no family fits. Nothing is downloaded.
    /// </summary>
    public static ArchitectureConfig? ArchitectureOf(string weights)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(weights);
        if (File.Exists(weights)) return ArchitectureInference.OfFile(weights).Architecture;
        return PretrainedWeightCatalog.TryFind(weights) is { } entry ? Architectures.Get(entry.Architecture) : null;
    }

    /// <summary>
    /// The catalog entry of a local file, or null: by the torchvision hash prefix in its name (as torch.hub names its
    /// cache files; no hashing), else by its content (SHA-256 and MD5 against every entry's published hash).
    /// </summary>
    public static PretrainedWeightEntry? Identify(string path)
    {
        // Remembered per file (path, size, time written): trainers ask while validating and again while fitting, and a
        // file that no name identifies is hashed.
        var info = new FileInfo(path);
        var key = (info.FullName, info.Length, info.LastWriteTimeUtc);
        lock (Identified)
            if (Identified.TryGetValue(key, out var known)) return known;
        var entry = IdentifyUncached(path);
        lock (Identified) Identified[key] = entry;
        return entry;
    }

    static readonly Dictionary<(string Path, long Length, DateTime Written), PretrainedWeightEntry?> Identified = new();

    static PretrainedWeightEntry? IdentifyUncached(string path)
    {
        var entries = PretrainedWeightCatalog.Entries;
        if (TorchvisionFileName().Match(System.IO.Path.GetFileName(path)) is { Success: true } m)
        {
            var prefix = m.Groups["hash"].Value;
            var byName = entries.FirstOrDefault(e => e.Hash.Algorithm == WeightHashAlgorithm.Sha256Prefix && e.Hash.Value.Equals(prefix, StringComparison.OrdinalIgnoreCase));
            if (byName is not null) return byName;
        }
        var (sha256, md5) = WeightFileHashes.Compute(path);
        return entries.FirstOrDefault(e => e.Hash.Matches(sha256, md5));
    }

    /// <summary>
    /// Finds a NuGet package entry's files: in the application folder (where the package's build step copies them),
    /// then in the NuGet packages folder (<c>NUGET_PACKAGES</c>, else <c>~/.nuget/packages</c>).
    /// </summary>
    /// <exception cref="FileNotFoundException">The package is in neither place; the message names the package to add and the paths searched.</exception>
    static ResolvedWeights Locate(PretrainedWeightEntry entry, PretrainedWeightOptions options)
    {
        var package = entry.Package!;
        var application = options.ApplicationDirectory ?? AppContext.BaseDirectory;
        var packages = options.NuGetPackagesDirectory
            ?? (Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured ? configured
                : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"));
        var packageFolder = System.IO.Path.Combine(packages, package.Id.ToLowerInvariant(), package.Version.ToLowerInvariant());
        var candidates = new[]
        {
            (Root: application, Files: package.Companions.Prepend(package.File).Select(f => f.OutputPath).ToList()),
            (Root: packageFolder, Files: package.Companions.Prepend(package.File).Select(f => f.Path).ToList()),
        };
        foreach (var (root, files) in candidates)
        {
            var full = files.Select(f => System.IO.Path.GetFullPath(System.IO.Path.Combine(root, f))).ToList();
            if (full.All(File.Exists)) return new ResolvedWeights(full[0], entry, WeightOrigin.Package, full.Skip(1).ToList());
        }
        var searched = candidates.Select(c => System.IO.Path.GetFullPath(System.IO.Path.Combine(c.Root, c.Files[0])));
        throw new FileNotFoundException(
            $"'{entry.Name}' comes in the NuGet package {package.Id} {package.Version}, which is not installed here. " +
            $"Add it to the application: dotnet add package {package.Id} --version {package.Version} (its build step copies " +
            $"{System.IO.Path.GetDirectoryName(package.File.OutputPath)}/ into the output folder). Searched: {string.Join(", ", searched)}.",
            searched.First());
    }

    static bool LooksLikePath(string weights)
        => weights.IndexOfAny(['/', '\\']) >= 0 || KnownExtensions.Any(x => weights.EndsWith(x, StringComparison.OrdinalIgnoreCase));

    static readonly string[] KnownExtensions = [".pth", ".pt", ".bin", ".safetensors", ".h5", ".hdf5", ".keras", ".onnx", ".tar", ".ckpt"];

    /// <summary>torch.hub's convention: <c>name-HASHPREFIX.pth</c>, the prefix being the first hex digits of the file's SHA-256.</summary>
    [GeneratedRegex(@"-(?<hash>[0-9a-f]{8,64})\.(pth|pt)$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex TorchvisionFileName();
}
