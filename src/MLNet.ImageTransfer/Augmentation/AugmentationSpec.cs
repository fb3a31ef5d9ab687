using System.Globalization;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// The text form of an <see cref="AugmentationPipeline"/> (the CLI's <c>--augment</c>, and what a model records).
/// </summary>
/// <remarks>
/// <para><b>Grammar.</b> <c>none</c> | <c>default</c> | items separated by commas. An item is
/// <c>name</c>, <c>name=value</c> or <c>name(key=value,…)</c>, optionally followed by <c>@probability</c>
/// (also <c>p=</c> inside the parentheses). Values are numbers (<c>0.2</c>, <c>1/255</c>) or ranges <c>min:max</c>.
/// Names ignore case, <c>-</c> and <c>_</c>, so Keras' argument names work as written.</para>
/// <para><b>Ops</b> (a single number means ±value for angles, shifts, hue and channel shift; 1±value for factors):</para>
/// <list type="table">
/// <item><term>hflip, vflip, flip=h|v|hv</term><description>mirror; p = 0.5 unless given (Keras <c>horizontal_flip</c>, <c>vertical_flip</c>)</description></item>
/// <item><term>rotate=20</term><description>degrees, counter-clockwise positive (<c>rotation_range</c>)</description></item>
/// <item><term>shift=0.1, width-shift=0.2, height-shift=0.2, shift(width=…,height=…)</term><description>fraction of the size (&lt; 1) or pixels</description></item>
/// <item><term>shear=10</term><description>degrees (Keras <c>shear_range</c> units)</description></item>
/// <item><term>zoom=0.2 | zoom=0.8:1.2 | zoom(factor=0.8:1.2,keep-aspect)</term><description>Keras <c>zoom_range</c>: factor &lt; 1 zooms in</description></item>
/// <item><term>crop | crop=200 | crop=0.9</term><description>random square crop (pixels, or fraction of the side; default the network's size), resized to the network's size</description></item>
/// <item><term>resized-crop | resized-crop=0.25 | resized-crop(scale=0.08:1,ratio=0.75:1.333)</term><description>torchvision <c>RandomResizedCrop</c></description></item>
/// <item><term>brightness=0.2, contrast=0.2, saturation=0.2</term><description>factors 1 ± value, or <c>min:max</c> (Keras <c>brightness_range=0.5:1.5</c>)</description></item>
/// <item><term>hue=0.1</term><description>turns of the colour circle, at most 0.5</description></item>
/// <item><term>channel-shift=20</term><description>Keras <c>channel_shift_range</c>, pixel units</description></item>
/// <item><term>grayscale</term><description>p = 0.1 unless given</description></item>
/// <item><term>blur=5 | blur(kernel=5,sigma=0.1:2)</term><description>Gaussian blur, odd kernel size</description></item>
/// <item><term>erase | erase(scale=0.02:0.33,ratio=0.3:3.3,value=0|random)</term><description>random erasing, p = 0.5 unless given</description></item>
/// <item><term>rescale=1/255</term><description>Keras <c>rescale</c>: units of the following ops' parameters (the network's scaling is the preprocessing)</description></item>
/// </list>
/// <para><b>Settings:</b> <c>fill=nearest|constant|reflect|wrap</c> (Keras <c>fill_mode</c>), <c>cval=0</c>, <c>seed=N</c>, <c>workers=N</c>.</para>
/// <para><b>Presets</b> (usable as items): <c>default</c> (resized-crop(scale=0.35:1),hflip, brightness/contrast/saturation 0.8:1.2: moderate, for short runs),
/// <c>keras</c> (the Keras VGG16 tutorial's ImageDataGenerator: rotate=20,shift=0.2,shear=0.2,zoom=0.2,hflip,fill=nearest),
/// <c>torchvision</c> (resized-crop,hflip), <c>none</c>.</para>
/// </remarks>
public static class AugmentationSpec
{
    /// <summary>One-paragraph summary for command-line help.</summary>
    public const string Help =
        "none | default | keras | torchvision | comma-separated ops: hflip, vflip, rotate=DEG, shift=F, width-shift=F, height-shift=F, shear=DEG, " +
        "zoom=F|MIN:MAX, crop[=PX|FRACTION], resized-crop[=MINSCALE], brightness=F, contrast=F, saturation=F, hue=F, channel-shift=V, " +
        "grayscale, blur=K, erase, rescale=1/255; settings fill=nearest|constant|reflect|wrap, cval=V, seed=N; '@P' sets an op's probability " +
        "(e.g. \"hflip,rotate=20,zoom=0.2,fill=reflect\"). Keras names work too (rotation_range=20, horizontal_flip).";

    static readonly Dictionary<string, string> Presets = new()
    {
        // A moderate recipe for short runs (a few epochs, from scratch or fine-tuning): torchvision's 8% minimum crop
        // is tuned for ImageNet's 90-epoch schedules, so here every crop keeps at least 35% of the photo; mirror
        // images; colour jitter kept light (±20%) so that it does not change what a class looks like.
        ["default"] = "resized-crop(scale=0.35:1),hflip,brightness=0.8:1.2,contrast=0.8:1.2,saturation=0.8:1.2",
        ["keras"] = "rotate=20,shift=0.2,shear=0.2,zoom=0.2,hflip,fill=nearest",
        ["torchvision"] = "resized-crop,hflip",
        ["none"] = "",
    };

    delegate IEnumerable<AugmentationOp> OpBuilder(Item item);

    static readonly (string[] Names, OpBuilder Build)[] OpTable =
    [
        (["hflip", "horizontalflip", "fliplr", "fliph", "randomhorizontalflip", "flipleftright"], i => Flag(i, () => new HorizontalFlip())),
        (["vflip", "verticalflip", "flipud", "flipv", "randomverticalflip", "flipupdown"], i => Flag(i, () => new VerticalFlip())),
        (["flip"], Flip),
        (["rotate", "rotation", "rotationrange", "randomrotation"], i => [new Rotate(i.Range("degrees", Kind.Symmetric, required: true))]),
        (["shift", "translate"], i =>
        {
            var both = i.Value is null ? (ParameterRange?)null : i.Range(null, Kind.Symmetric);
            var width = i.Has("width") ? i.Range("width", Kind.Symmetric) : both;
            var height = i.Has("height") ? i.Range("height", Kind.Symmetric) : both;
            if (width is null && height is null) throw i.Error("needs a value, e.g. shift=0.1 or shift(width=0.2,height=0.1)");
            return [new Shift(width ?? default, height ?? default)];
        }),
        (["widthshift", "widthshiftrange", "shiftx"], i => [new Shift(i.Range("width", Kind.Symmetric, required: true), default)]),
        (["heightshift", "heightshiftrange", "shifty"], i => [new Shift(default, i.Range("height", Kind.Symmetric, required: true))]),
        (["shear", "shearrange"], i => [new Shear(i.Range("degrees", Kind.Symmetric, required: true))]),
        (["zoom", "zoomrange"], i => [new Zoom(i.Range("factor", Kind.AroundOne, required: true), i.Bool("keepaspect"))]),
        (["crop", "randomcrop"], i => [new RandomCrop(i.Has("size") || i.Value is not null ? i.Number("size") : null)]),
        (["resizedcrop", "randomresizedcrop", "rrc"], i =>
        {
            var op = new RandomResizedCrop();
            if (i.Has("scale") || i.Value is not null) op = op with { Scale = i.Range("scale", Kind.UpToOne) };
            if (i.Has("ratio")) op = op with { Ratio = i.Range("ratio", Kind.Fixed) };
            return [op];
        }),
        (["brightness", "brightnessrange"], i => [new Brightness(i.Range("factor", Kind.AroundOne, required: true))]),
        (["contrast"], i => [new Contrast(i.Range("factor", Kind.AroundOne, required: true))]),
        (["saturation"], i => [new Saturation(i.Range("factor", Kind.AroundOne, required: true))]),
        (["hue"], i => [new Hue(i.Range("shift", Kind.Symmetric, required: true))]),
        (["channelshift", "channelshiftrange"], i => [new ChannelShift(i.Range("intensity", Kind.Symmetric, required: true))]),
        (["grayscale", "greyscale", "randomgrayscale", "gray", "grey"], i => Flag(i, () => new Grayscale())),
        (["blur", "gaussianblur"], i =>
        {
            var op = new GaussianBlur();
            if (i.Has("kernel") || i.Value is not null) op = op with { KernelSize = i.Integer("kernel") };
            if (i.Has("sigma")) op = op with { Sigma = i.Range("sigma", Kind.Fixed) };
            return [op];
        }),
        (["erase", "erasing", "randomerasing", "cutout"], i =>
        {
            if (i.Value is not null) throw i.Error("takes no value; use erase(scale=…,ratio=…,value=…)");
            var op = new RandomErasing();
            if (i.Has("scale")) op = op with { Scale = i.Range("scale", Kind.Fixed) };
            if (i.Has("ratio")) op = op with { Ratio = i.Range("ratio", Kind.Fixed) };
            if (i.Has("value")) op = op with { Value = i.Text("value") is "random" ? null : i.Number("value") };
            return [op];
        }),
        (["rescale"], i => [new Rescale(i.Number("factor", required: true)!.Value)]),
    ];

    static readonly Dictionary<string, OpBuilder> Ops = OpTable.SelectMany(e => e.Names.Select(n => (n, e.Build))).ToDictionary(p => p.n, p => p.Build);

    /// <summary>The op names (canonical first names) the parser knows.</summary>
    public static IReadOnlyList<string> OpNames { get; } =
        ["hflip", "vflip", "flip", "rotate", "shift", "width-shift", "height-shift", "shear", "zoom", "crop", "resized-crop",
         "brightness", "contrast", "saturation", "hue", "channel-shift", "grayscale", "blur", "erase", "rescale"];

    internal static AugmentationPipeline Parse(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec))
            throw new ArgumentException("The augmentation spec is empty. Use 'none' for no augmentation, 'default', or ops such as \"hflip,rotate=20\".", nameof(spec));
        var pipeline = Apply(new AugmentationPipeline(), spec, spec, depth: 0);
        try
        {
            pipeline.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"Augmentation spec '{spec}': {e.Message}", nameof(spec), e);
        }
        return pipeline;
    }

    static AugmentationPipeline Apply(AugmentationPipeline pipeline, string text, string whole, int depth)
    {
        foreach (var raw in SplitTopLevel(text, whole))
        {
            var item = Item.Parse(raw, whole);
            switch (item.Name)
            {
                case "fill" or "fillmode":
                    pipeline = pipeline with { Fill = item.Value?.ToLowerInvariant() switch
                    {
                        "nearest" or "edge" or "border" or "replicate" => FillMode.Nearest,
                        "constant" or "zeros" => FillMode.Constant,
                        "reflect" or "reflection" or "mirror" => FillMode.Reflect,
                        "wrap" or "circular" => FillMode.Wrap,
                        _ => throw item.Error("must be nearest, constant, reflect or wrap"),
                    } };
                    break;
                case "cval" or "fillvalue":
                    pipeline = pipeline with { FillValue = item.Number(null, required: true)!.Value };
                    break;
                case "seed":
                    pipeline = pipeline with { Seed = item.Integer(null) };
                    break;
                case "workers":
                    pipeline = pipeline with { Workers = item.Integer(null) };
                    break;
                default:
                    if (Presets.TryGetValue(item.Name, out var preset))
                    {
                        if (item.Value is not null || item.Arguments.Count > 0 || item.Probability is not null) throw item.Error("is a preset and takes no arguments");
                        if (depth == 0 && preset.Length > 0) pipeline = Apply(pipeline, preset, whole, depth + 1);
                        break;
                    }
                    if (!Ops.TryGetValue(item.Name, out var build))
                        throw new ArgumentException($"Unknown augmentation '{item.Raw}' in '{whole}'. Known ops: {string.Join(", ", OpNames)}; settings: fill, cval, seed, workers; presets: {string.Join(", ", Presets.Keys)}.");
                    var ops = build(item).ToList();
                    item.CheckAllArgumentsUsed();
                    foreach (var op in ops)
                    {
                        var withP = item.Probability is { } p ? op with { Probability = p } : op;
                        try
                        {
                            withP.Validate();
                        }
                        catch (ArgumentException e)
                        {
                            throw new ArgumentException($"Augmentation '{item.Raw}' in '{whole}': {e.Message}", e);
                        }
                        pipeline = pipeline with { Ops = [.. pipeline.Ops, withP] };
                    }
                    break;
            }
        }
        return pipeline;
    }

    static IEnumerable<AugmentationOp> Flag(Item item, Func<AugmentationOp> create)
        => item.Value is null || item.Bool(null) ? [create()] : [];

    static IEnumerable<AugmentationOp> Flip(Item item) => item.Value?.ToLowerInvariant() switch
    {
        null or "true" or "h" or "horizontal" => [new HorizontalFlip()],
        "v" or "vertical" => [new VerticalFlip()],
        "hv" or "vh" or "both" => [new HorizontalFlip(), new VerticalFlip()],
        "false" => [],
        _ => throw item.Error("must be flip, flip=h, flip=v or flip=hv"),
    };

    static List<string> SplitTopLevel(string text, string whole)
    {
        var parts = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '(') depth++;
            else if (c == ')' && --depth < 0) throw new ArgumentException($"Augmentation spec '{whole}' has an unmatched ')'.");
            else if (c == ',' && depth == 0) { parts.Add(text[start..i]); start = i + 1; }
        }
        if (depth != 0) throw new ArgumentException($"Augmentation spec '{whole}' has an unclosed '('.");
        parts.Add(text[start..]);
        for (int i = 0; i < parts.Count; i++)
            if (string.IsNullOrWhiteSpace(parts[i]))
                throw new ArgumentException($"Augmentation spec '{whole}' has an empty item (two commas in a row, or a trailing comma).");
        return parts.Select(p => p.Trim()).ToList();
    }

    internal static string Normalize(string name) => new(name.Trim().ToLowerInvariant().Where(c => c is not ('-' or '_' or ' ')).ToArray());

    enum Kind { Symmetric, AroundOne, UpToOne, Fixed }

    /// <summary>One parsed item: <c>name[=value][(key=value,…)][@p]</c>.</summary>
    sealed class Item
    {
        readonly string _whole;
        readonly HashSet<string> _used = new();

        Item(string raw, string whole) { Raw = raw; _whole = whole; }

        public string Raw { get; }
        public string Name { get; private set; } = "";
        public string? Value { get; private set; }
        public Dictionary<string, string?> Arguments { get; } = new();
        public double? Probability { get; private set; }

        public static Item Parse(string raw, string whole)
        {
            var item = new Item(raw, whole);
            string rest = raw;
            int at = rest.LastIndexOf('@');
            if (at >= 0 && rest.IndexOf(')', at) < 0)
            {
                item.Probability = item.ParseNumber(rest[(at + 1)..].Trim(), "probability");
                rest = rest[..at];
            }
            int open = rest.IndexOf('(');
            if (open >= 0)
            {
                if (!rest.TrimEnd().EndsWith(')')) throw item.Error("has text after its ')'");
                var inner = rest[(open + 1)..rest.LastIndexOf(')')];
                rest = rest[..open];
                foreach (var arg in inner.Split(',', StringSplitOptions.TrimEntries))
                {
                    if (arg.Length == 0) throw item.Error("has an empty argument");
                    int eq = arg.IndexOf('=');
                    var key = Normalize(eq < 0 ? arg : arg[..eq]);
                    if (key is "p" or "probability")
                    {
                        item.Probability = item.ParseNumber(eq < 0 ? "" : arg[(eq + 1)..].Trim(), "probability");
                        continue;
                    }
                    if (!item.Arguments.TryAdd(key, eq < 0 ? null : arg[(eq + 1)..].Trim())) throw item.Error($"gives '{key}' twice");
                }
            }
            int equals = rest.IndexOf('=');
            item.Name = Normalize(equals < 0 ? rest : rest[..equals]);
            item.Value = equals < 0 ? null : rest[(equals + 1)..].Trim();
            if (item.Name.Length == 0) throw item.Error("has no name");
            if (item.Value is { Length: 0 }) throw item.Error("has '=' but no value");
            return item;
        }

        public bool Has(string key) => Arguments.ContainsKey(key);

        /// <summary>The text of argument <paramref name="key"/>, or the item's value when <paramref name="key"/> is null or absent from the arguments.</summary>
        public string? Text(string? key)
        {
            if (key is not null && Arguments.TryGetValue(key, out var v))
            {
                _used.Add(key);
                if (v is null) throw Error($"argument '{key}' needs a value");
                return v;
            }
            return Value;
        }

        public ParameterRange Range(string? key, Kind kind, bool required = false)
        {
            var text = Text(key);
            if (text is null)
            {
                if (required) throw Error($"needs a value, e.g. {Name}=0.2 or {Name}=0.1:0.3");
                return default;
            }
            int colon = text.IndexOf(':');
            if (colon >= 0) return new(ParseNumber(text[..colon], key ?? Name), ParseNumber(text[(colon + 1)..], key ?? Name));
            double v = ParseNumber(text, key ?? Name);
            if (kind is Kind.Symmetric or Kind.AroundOne && v < 0)
                throw Error($"a single value is a magnitude (±{ParameterRange.Format(-v)}) and cannot be negative; write a range such as {ParameterRange.Format(v)}:{ParameterRange.Format(-v)}");
            return kind switch
            {
                Kind.Symmetric => ParameterRange.Symmetric(v),
                Kind.AroundOne => new ParameterRange(Name.StartsWith("zoom") ? 1 - v : Math.Max(0, 1 - v), 1 + v),
                Kind.UpToOne => new ParameterRange(v, 1),
                _ => ParameterRange.Fixed(v),
            };
        }

        public double? Number(string? key, bool required = false)
        {
            var text = Text(key);
            if (text is null)
            {
                if (required) throw Error("needs a value");
                return null;
            }
            return ParseNumber(text, key ?? Name);
        }

        public int Integer(string? key)
        {
            var text = Text(key) ?? throw Error("needs a whole number");
            return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : throw Error($"'{text}' is not a whole number");
        }

        public bool Bool(string? key)
        {
            if (key is not null && Arguments.TryGetValue(key, out var v))
            {
                _used.Add(key);
                return v is null || ParseBool(v);
            }
            return key is null && Value is { } value && ParseBool(value);
        }

        bool ParseBool(string text) => text.ToLowerInvariant() switch
        {
            "true" or "1" or "yes" => true,
            "false" or "0" or "no" => false,
            _ => throw Error($"'{text}' is not true or false"),
        };

        double ParseNumber(string text, string what)
        {
            text = text.Trim();
            int slash = text.IndexOf('/');
            if (slash > 0 && TryDouble(text[..slash], out var num) && TryDouble(text[(slash + 1)..], out var den) && den != 0) return num / den;
            if (TryDouble(text, out var value)) return value;
            throw Error($"{what} '{text}' is not a number (use e.g. 0.2, 1/255, or a range min:max)");

            static bool TryDouble(string s, out double d) => double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out d) && double.IsFinite(d);
        }

        public void CheckAllArgumentsUsed()
        {
            var unknown = Arguments.Keys.Where(k => !_used.Contains(k)).ToList();
            if (unknown.Count > 0) throw Error($"has unknown argument(s) {string.Join(", ", unknown)}");
        }

        public ArgumentException Error(string message) => new($"Augmentation '{Raw}' in '{_whole}' {message}.");
    }
}
