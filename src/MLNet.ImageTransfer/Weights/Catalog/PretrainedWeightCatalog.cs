using System.Text.Json;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// The published ImageNet weights of the registry's architectures, by name (torchvision's <c>weights=</c>, Keras'
/// <c>weights="imagenet"</c>, timm's <c>architecture.tag</c>). The entries are data — <c>pretrained-weights.json</c>,
/// embedded in the library, one entry per published file, each value read from its publisher's source — so that
/// adding a file is a data change and every consumer (resolution, the CLI's list, the tests) reads the same facts.
/// Files named in <see cref="EnvironmentVariable"/> add entries of the same form (a mirror, an organisation's own weights).
/// </summary>
public static class PretrainedWeightCatalog
{
    /// <summary>Extra catalog files (same JSON form as the built-in one), separated by the platform's path separator.</summary>
    public const string EnvironmentVariable = "MLNET_IMAGETRANSFER_CATALOG";

    /// <summary>What <c>weights = "imagenet"</c> means: the default entry of the chosen architecture.</summary>
    public const string ImageNet = "imagenet";

    const string ResourcePrefix = "MLNet.ImageTransfer.Weights.Catalog.";
    static readonly Lazy<IReadOnlyList<PretrainedWeightEntry>> BuiltIn = new(() =>
    {
        using var stream = OpenResource("pretrained-weights.json");
        return Parse(stream, "the built-in catalog");
    });
    static readonly Dictionary<string, IReadOnlyList<string>> ClassNameSets = new(StringComparer.OrdinalIgnoreCase);
    static CatalogState? _current;

    sealed record CatalogState(string? Setting, IReadOnlyList<PretrainedWeightEntry> Entries);

    /// <summary>Every entry: the built-in ones, then those of the files in <see cref="EnvironmentVariable"/>.</summary>
    /// <exception cref="InvalidDataException">An extra catalog file is malformed, or repeats a name.</exception>
    public static IReadOnlyList<PretrainedWeightEntry> Entries
    {
        get
        {
            var setting = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (_current is { } current && current.Setting == setting) return current.Entries;
            var entries = BuiltIn.Value.ToList();
            foreach (var file in (setting ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                entries.AddRange(Load(file));
            CheckUnique(entries, setting is null ? "the built-in catalog" : $"the catalog with {EnvironmentVariable}={setting}");
            _current = new CatalogState(setting, entries);
            return entries;
        }
    }

    /// <summary>Reads a catalog file (the built-in one's JSON form).</summary>
    /// <exception cref="InvalidDataException">The file is not a valid catalog; the message names the file and the entry.</exception>
    public static IReadOnlyList<PretrainedWeightEntry> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Weight catalog '{path}' ({EnvironmentVariable}) does not exist.", path);
        using var stream = File.OpenRead(path);
        return Parse(stream, path);
    }

    /// <summary>The entry with this name or alias (case-insensitive), or null.</summary>
    public static PretrainedWeightEntry? TryFind(string name)
    {
        var key = name?.Trim() ?? "";
        return Entries.FirstOrDefault(e => e.Name.Equals(key, StringComparison.OrdinalIgnoreCase))
            ?? Entries.FirstOrDefault(e => e.Aliases.Any(a => a.Equals(key, StringComparison.OrdinalIgnoreCase)));
    }

    /// <summary>The entry with this name or alias (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No such entry; the message lists the close names.</exception>
    public static PretrainedWeightEntry Find(string name)
        => TryFind(name) ?? throw new ArgumentException($"Unknown pretrained weights '{name}'. {Suggest(name)}");

    /// <summary>The entries whose files load into <paramref name="architecture"/> as they are.</summary>
    public static IReadOnlyList<PretrainedWeightEntry> For(string architecture)
        => Entries.Where(e => e.Architecture.Equals(architecture, StringComparison.OrdinalIgnoreCase)).ToList();

    /// <summary>The default entry of an architecture (what <c>imagenet</c> means for it), or null when the catalog has none.</summary>
    public static PretrainedWeightEntry? DefaultFor(string architecture)
        => Entries.FirstOrDefault(e => e.IsDefault && e.Architecture.Equals(architecture, StringComparison.OrdinalIgnoreCase));

    /// <summary>Architectures with at least one entry.</summary>
    public static IReadOnlyList<string> ArchitecturesWithWeights => Entries.Select(e => e.Architecture).Distinct(StringComparer.OrdinalIgnoreCase).ToList();

    /// <summary>
    /// A class-names set in class-index order: <c>imagenet-1k</c> is torchvision's <c>_IMAGENET_CATEGORIES</c> (the
    /// order of the classifier's outputs, the same as Keras' <c>imagenet_class_index.json</c>).
    /// </summary>
    /// <exception cref="ArgumentException">Unknown set.</exception>
    public static IReadOnlyList<string> ClassNames(string set)
    {
        lock (ClassNameSets)
        {
            if (ClassNameSets.TryGetValue(set, out var names)) return names;
            if (!set.Equals("imagenet-1k", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"Unknown class-names set '{set}'. Known: imagenet-1k.", nameof(set));
            using var reader = new StreamReader(OpenResource("imagenet-1k.txt"));
            var list = new List<string>(1000);
            while (reader.ReadLine() is { } line) if (line.Length > 0) list.Add(line);
            return ClassNameSets[set] = list.AsReadOnly();
        }
    }

    /// <summary>
    /// The names (and aliases) closest to <paramref name="name"/>, for error messages: those of the same (or a nearly
    /// equal) architecture and those a small edit distance away, nearest first.
    /// </summary>
    public static IReadOnlyList<string> CloseMatches(string name, int max = 6)
    {
        var key = (name ?? "").Trim().ToLowerInvariant();
        var arch = key.Split('.')[0];
        return Entries
            .SelectMany(e => e.Aliases.Prepend(e.Name).Select(n => (Name: n, Entry: e)))
            .Select(c => (c.Name, Distance: EditDistance(key, c.Name.ToLowerInvariant()),
                SameArchitecture: arch.Length > 0 && (c.Entry.Architecture.StartsWith(arch, StringComparison.OrdinalIgnoreCase)
                    || EditDistance(arch, c.Entry.Architecture.ToLowerInvariant()) <= Math.Max(1, arch.Length / 5))))
            .Where(c => c.SameArchitecture || c.Distance <= Math.Max(2, key.Length / 4))
            .OrderBy(c => c.Distance).ThenBy(c => c.Name, StringComparer.Ordinal)
            .Select(c => c.Name).Distinct(StringComparer.OrdinalIgnoreCase).Take(max).ToList();
    }

    internal static string Suggest(string name)
    {
        var close = CloseMatches(name);
        return (close.Count > 0 ? $"Close: {string.Join(", ", close)}. " : "")
            + "'mlnet-imagetransfer weights list' shows every name; a file path works too.";
    }

    static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1], previous[j]) + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }

    static Stream OpenResource(string name)
        => typeof(PretrainedWeightCatalog).Assembly.GetManifestResourceStream(ResourcePrefix + name)
            ?? throw new InvalidOperationException($"The library's embedded resource '{ResourcePrefix + name}' is missing (a broken build).");

    static void CheckUnique(IEnumerable<PretrainedWeightEntry> entries, string origin)
    {
        var seen = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var e in entries)
            foreach (var n in e.Aliases.Prepend(e.Name))
                if (!seen.TryAdd(n, e.Name))
                    throw new InvalidDataException($"In {origin}: the name '{n}' of '{e.Name}' is already used by '{seen[n]}'.");
    }

    /// <summary>Reads entries from catalog JSON; each value is checked so that a wrong entry fails here, not at download.</summary>
    internal static IReadOnlyList<PretrainedWeightEntry> Parse(Stream json, string origin)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new InvalidDataException($"Weight catalog {origin} is not valid JSON: {e.Message}", e); }
        using (doc)
        {
            if (!doc.RootElement.TryGetProperty("entries", out var list) || list.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"Weight catalog {origin} has no \"entries\" array.");
            var entries = new List<PretrainedWeightEntry>();
            foreach (var item in list.EnumerateArray())
            {
                var name = item.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : $"entry {entries.Count + 1}";
                try { entries.Add(ParseEntry(item)); }
                catch (Exception e) when (e is InvalidDataException or FormatException or InvalidOperationException or KeyNotFoundException)
                {
                    throw new InvalidDataException($"Weight catalog {origin}, '{name}': {e.Message}", e);
                }
            }
            CheckUnique(entries, origin);
            return entries;
        }
    }

    /// <summary>The version of a package this library was built against, from its <c>PackageVersion:&lt;id&gt;</c> assembly metadata.</summary>
    internal static string? BuiltAgainst(string packageId) => typeof(PretrainedWeightCatalog).Assembly
        .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false).Cast<System.Reflection.AssemblyMetadataAttribute>()
        .FirstOrDefault(a => a.Key == "PackageVersion:" + packageId)?.Value;

    static PretrainedWeightEntry ParseEntry(JsonElement e)
    {
        string Str(JsonElement o, string key) => OptStr(o, key) ?? throw new InvalidDataException($"\"{key}\" is missing.");
        static string? OptStr(JsonElement o, string key) => o.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        static int? OptInt(JsonElement o, string key) => o.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
        static double? OptDouble(JsonElement o, string key) => o.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

        var name = Str(e, "name");
        if (name.Any(char.IsWhiteSpace) || name.Equals(ImageNet, StringComparison.OrdinalIgnoreCase))
            throw new InvalidDataException($"\"{name}\" cannot be a name.");
        var source = Str(e, "source") switch
        {
            "torchvision" => WeightPublisher.Torchvision,
            "keras" => WeightPublisher.Keras,
            "nuget" => WeightPublisher.NuGetPackage,
            var s => throw new InvalidDataException($"unknown source \"{s}\" (torchvision, keras, nuget)."),
        };
        var format = Enum.TryParse<WeightFormat>(Str(e, "format"), ignoreCase: true, out var f) ? f
            : throw new InvalidDataException($"unknown format \"{Str(e, "format")}\" ({string.Join(", ", Enum.GetNames<WeightFormat>())}).");
        var fileName = Str(e, "fileName");
        if (fileName != Path.GetFileName(fileName) || fileName is "." or "..")
            throw new InvalidDataException($"\"fileName\" must be a bare file name, not \"{fileName}\".");

        var hashElement = e.GetProperty("hash");
        var algorithm = Str(hashElement, "algorithm") switch
        {
            "sha256-prefix" => WeightHashAlgorithm.Sha256Prefix,
            "sha256" => WeightHashAlgorithm.Sha256,
            "md5" => WeightHashAlgorithm.Md5,
            var a => throw new InvalidDataException($"unknown hash algorithm \"{a}\" (sha256-prefix, sha256, md5)."),
        };
        var hashValue = Str(hashElement, "value").ToLowerInvariant();
        int expectedLength = algorithm switch { WeightHashAlgorithm.Sha256 => 64, WeightHashAlgorithm.Md5 => 32, _ => 0 };
        if (!hashValue.All(Uri.IsHexDigit) || (expectedLength > 0 ? hashValue.Length != expectedLength : hashValue.Length is < 8 or > 64))
            throw new InvalidDataException($"hash \"{hashValue}\" is not {(expectedLength > 0 ? $"{expectedLength}" : "8 to 64")} hex digits.");

        var url = OptStr(e, "url");
        NuGetPackageLocation? package = null;
        if (source == WeightPublisher.NuGetPackage)
        {
            var p = e.GetProperty("package");
            var companions = p.TryGetProperty("companions", out var c) && c.ValueKind == JsonValueKind.Array
                ? c.EnumerateArray().Select(x => new PackageFile(Str(x, "path"), Str(x, "outputPath"))).ToList()
                : [];
            var id = Str(p, "id");
            // Without a version: the one this library was built against (stamped from Directory.Packages.props).
            var version = OptStr(p, "version") ?? BuiltAgainst(id)
                ?? throw new InvalidDataException($"the package {id} has no \"version\", and this library records none for it.");
            package = new NuGetPackageLocation(id, version, new PackageFile(Str(p, "path"), Str(p, "outputPath")), companions);
            if (url is not null) throw new InvalidDataException("a NuGet package entry has no \"url\" (it is found, never downloaded).");
        }
        else if (url is null || !Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
            throw new InvalidDataException($"\"url\" must be an absolute http(s) URL, not \"{url}\".");

        var pre = e.GetProperty("preprocessing");
        var preprocessing = new PretrainedPreprocessing(Str(pre, "mode"), OptInt(pre, "resize") ?? throw new InvalidDataException("preprocessing \"resize\" is missing."),
            OptInt(pre, "crop"), OptStr(pre, "interpolation"), OptStr(pre, "graph"));
        if (preprocessing.Mode is not ("torchvision" or "caffe" or "torch" or "onnx-graph"))
            throw new InvalidDataException($"unknown preprocessing mode \"{preprocessing.Mode}\" (torchvision, caffe, torch, onnx-graph).");
        if (preprocessing.Mode == "torchvision" && preprocessing.Crop is null)
            throw new InvalidDataException("torchvision preprocessing needs \"crop\".");

        return new PretrainedWeightEntry
        {
            Name = name,
            Aliases = e.TryGetProperty("aliases", out var aliases) && aliases.ValueKind == JsonValueKind.Array
                ? aliases.EnumerateArray().Select(a => a.GetString()!).ToList() : [],
            Architecture = Str(e, "architecture"),
            Source = source,
            PublisherName = OptStr(e, "publisherName"),
            Format = format,
            Url = url,
            FileName = fileName,
            Package = package,
            Hash = new WeightHash(algorithm, hashValue),
            FileSizeMB = OptDouble(e, "fileSizeMB"),
            FileBytes = e.TryGetProperty("fileBytes", out var b) && b.ValueKind == JsonValueKind.Number ? b.GetInt64() : null,
            IsDefault = e.TryGetProperty("default", out var d) && d.ValueKind == JsonValueKind.True,
            NumClasses = OptInt(e, "numClasses"),
            ClassNames = OptStr(e, "classNames"),
            Top1Accuracy = OptDouble(e, "acc1"),
            Preprocessing = preprocessing,
        };
    }

    /// <summary>
    /// True when weights made for <paramref name="entryArchitecture"/> can start <paramref name="requested"/>: the same
    /// architecture, or its Keras-convention variant (a Keras file makes the trainer build that variant; the reverse
    /// does not hold: torchvision weights lack the Keras ResNet's convolution biases).
    /// </summary>
    internal static bool Fits(string entryArchitecture, string requested)
        => entryArchitecture.Equals(requested, StringComparison.OrdinalIgnoreCase)
            || entryArchitecture.Equals(requested + Architectures.KerasSuffix, StringComparison.OrdinalIgnoreCase);
}
