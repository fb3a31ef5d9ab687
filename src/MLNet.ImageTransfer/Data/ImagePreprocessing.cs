using System.Text.Json.Serialization;

namespace MLNet.ImageTransfer.Data;

public enum ResizeMode
{
    /// <summary>Resize both sides to the target size, ignoring aspect ratio (Keras <c>target_size</c>).</summary>
    Stretch,
    /// <summary>Resize the shorter side to size / <see cref="ImagePreprocessing.CropFraction"/>, then take the centre square (torchvision's Resize(256) + CenterCrop(224)).</summary>
    ShorterSideThenCenterCrop,
}

public enum ChannelOrder { Rgb, Bgr }

/// <summary>
/// How an image becomes the network's input tensor: geometry, channel order, scaling and normalisation. It is part of
/// every fitted model and saved with it, so training, evaluation and scoring use the same numbers. Presets are paired
/// with the weight sources whose training used them (Keras' <c>preprocess_input</c> modes, torchvision's transforms).
/// The network input is <c>((pixel * Scale) - Mean[c]) / Std[c]</c> for pixel values 0–255 in <see cref="Channels"/> order
/// — or, with a <see cref="MeanImage"/>, <c>((pixel * Scale) - MeanImage[c, y, x]) / Std[c]</c>.
/// </summary>
public sealed record ImagePreprocessing
{
    /// <summary>Name of the preset this came from (informational; the numbers below are what counts).</summary>
    public string Name { get; init; } = "custom";
    /// <summary>Side of the square network input, in pixels.</summary>
    public int ImageSize { get; init; } = 224;
    public ResizeMode Resize { get; init; } = ResizeMode.ShorterSideThenCenterCrop;
    /// <summary>Fraction of the resized shorter side kept by the centre crop (224/256 in torchvision's recipe).</summary>
    public double CropFraction { get; init; } = 0.875;
    public ChannelOrder Channels { get; init; } = ChannelOrder.Rgb;
    public float Scale { get; init; } = 1f / 255f;
    public float[] Mean { get; init; } = [0f, 0f, 0f];
    public float[] Std { get; init; } = [1f, 1f, 1f];

    /// <summary>
    /// A per-pixel mean subtracted instead of <see cref="Mean"/>: 3 × <see cref="ImageSize"/>² values, channel-major in
    /// <see cref="Channels"/> order. ML.NET's pretrained ResNet18 was trained on images minus a mean image (read from
    /// the package's preprocessing graph, see <see cref="Weights.MLNetResNet18"/>); <see cref="Mean"/> then holds its
    /// per-channel averages, for display. Null (every other preset): <see cref="Mean"/> is subtracted.
    /// </summary>
    [JsonConverter(typeof(Float32ArrayAsBase64))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float[]? MeanImage { get; init; }

    /// <summary>What is subtracted after scaling, with the shape it broadcasts as over a batch [N,3,S,S].</summary>
    internal (float[] Values, long[] Shape) Centering => MeanImage is { } image
        ? (image, [1, 3, ImageSize, ImageSize])
        : (Mean, [1, 3, 1, 1]);

    /// <summary>torchvision / timm ImageNet weights: RGB, /255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).</summary>
    public static ImagePreprocessing TorchVision(int imageSize = 224) => new()
    {
        Name = "torchvision", ImageSize = imageSize, Resize = ResizeMode.ShorterSideThenCenterCrop,
        Channels = ChannelOrder.Rgb, Scale = 1f / 255f, Mean = [0.485f, 0.456f, 0.406f], Std = [0.229f, 0.224f, 0.225f],
    };

    /// <summary>Keras "caffe" mode (VGG, ResNet50 .h5 weights; Keras' <c>preprocess_input</c> mean subtraction): BGR, 0–255, minus the ImageNet BGR means.</summary>
    public static ImagePreprocessing KerasCaffe(int imageSize = 224) => new()
    {
        Name = "keras-caffe", ImageSize = imageSize, Resize = ResizeMode.Stretch,
        Channels = ChannelOrder.Bgr, Scale = 1f, Mean = [103.939f, 116.779f, 123.68f], Std = [1f, 1f, 1f],
    };

    /// <summary>Keras "torch" mode (DenseNet .h5 weights): RGB, /255, ImageNet mean/std.</summary>
    public static ImagePreprocessing KerasTorch(int imageSize = 224) => TorchVision(imageSize) with { Name = "keras-torch", Resize = ResizeMode.Stretch };

    /// <summary>Keras "tf" mode: RGB scaled to −1..1.</summary>
    public static ImagePreprocessing KerasTf(int imageSize = 224) => new()
    {
        Name = "keras-tf", ImageSize = imageSize, Resize = ResizeMode.Stretch,
        Channels = ChannelOrder.Rgb, Scale = 1f / 127.5f, Mean = [1f, 1f, 1f], Std = [1f, 1f, 1f],
    };

    /// <summary>Plain <c>rescale=1/255</c> (tf.keras' ImageDataGenerator tutorials), no mean/std.</summary>
    public static ImagePreprocessing Rescale(int imageSize = 224) => new()
    {
        Name = "rescale", ImageSize = imageSize, Resize = ResizeMode.Stretch, Channels = ChannelOrder.Rgb, Scale = 1f / 255f,
    };

    /// <summary>Looks a preset up by name: torchvision, keras-caffe, keras-torch, keras-tf, rescale.</summary>
    public static ImagePreprocessing FromPreset(string name, int imageSize = 224) => name.ToLowerInvariant() switch
    {
        "torchvision" or "imagenet" => TorchVision(imageSize),
        "keras-caffe" or "caffe" => KerasCaffe(imageSize),
        "keras-torch" => KerasTorch(imageSize),
        "keras-tf" or "tf" => KerasTf(imageSize),
        "rescale" => Rescale(imageSize),
        _ => throw new ArgumentException($"Unknown preprocessing preset '{name}'. Known: torchvision, keras-caffe, keras-torch, keras-tf, rescale."),
    };

    /// <summary>The same preprocessing at another input size; a <see cref="MeanImage"/> is resized as the images are (bilinear, antialiased).</summary>
    public ImagePreprocessing AtImageSize(int imageSize) => imageSize == ImageSize ? this : this with
    {
        ImageSize = imageSize,
        MeanImage = MeanImage is null ? null : ImageTensors.ResizePlanes(MeanImage, ImageSize, imageSize),
    };

    /// <summary>The intermediate size before the centre crop (torchvision: 256 for 224).</summary>
    [JsonIgnore]
    public int ResizeShorterSide => Resize == ResizeMode.ShorterSideThenCenterCrop ? (int)Math.Round(ImageSize / CropFraction) : ImageSize;

    public void Validate()
    {
        if (ImageSize < 8) throw new ArgumentOutOfRangeException(nameof(ImageSize), ImageSize, "Image size must be at least 8 pixels.");
        if (CropFraction is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(CropFraction), CropFraction, "Crop fraction must be in (0, 1].");
        if (Mean is not { Length: 3 } || Std is not { Length: 3 }) throw new ArgumentException("Mean and Std need exactly three values (one per channel).");
        if (Std.Any(s => s == 0 || !float.IsFinite(s))) throw new ArgumentException("Std values must be finite and non-zero.");
        if (Scale == 0 || !float.IsFinite(Scale)) throw new ArgumentException("Scale must be finite and non-zero.");
        if (MeanImage is { } image && image.Length != 3L * ImageSize * ImageSize)
            throw new ArgumentException($"The mean image holds {image.Length} values; an image size of {ImageSize} needs 3 × {ImageSize}² = {3L * ImageSize * ImageSize}. " +
                "A preprocessing with a mean image is made for one image size: take it again from its source at the new size.");
    }

    public bool Equals(ImagePreprocessing? other) => other is not null && Name == other.Name && ImageSize == other.ImageSize
        && Resize == other.Resize && CropFraction == other.CropFraction && Channels == other.Channels && Scale == other.Scale
        && Mean.SequenceEqual(other.Mean) && Std.SequenceEqual(other.Std)
        && (MeanImage is null ? other.MeanImage is null : other.MeanImage is not null && MeanImage.AsSpan().SequenceEqual(other.MeanImage));
    public override int GetHashCode() => HashCode.Combine(Name, ImageSize, Resize, Channels, Scale);
}

/// <summary>Writes a large float array as the base64 of its little-endian float32 bytes (a mean image is 150,528 values).</summary>
internal sealed class Float32ArrayAsBase64 : JsonConverter<float[]>
{
    public override float[] Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options)
    {
        var bytes = reader.GetBytesFromBase64();
        if (bytes.Length % 4 != 0) throw new System.Text.Json.JsonException("A float32 array's bytes must be a multiple of 4.");
        var values = new float[bytes.Length / 4];
        for (int i = 0; i < values.Length; i++) values[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
        return values;
    }

    public override void Write(System.Text.Json.Utf8JsonWriter writer, float[] value, System.Text.Json.JsonSerializerOptions options)
    {
        var bytes = new byte[value.Length * 4];
        for (int i = 0; i < value.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), value[i]);
        writer.WriteBase64StringValue(bytes);
    }
}
