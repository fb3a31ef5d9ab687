namespace MLNet.ImageTransfer.Models;

public enum HeadKind
{
    /// <summary>The family's own classifier with K outputs (torchvision's layout; for VGG its 3-layer classifier).</summary>
    Linear,
    /// <summary>Global average pooling → Dropout → Dense(hidden) → Dropout → Dense(K) (Keras transfer-learning head).</summary>
    Mlp,
}

public enum HeadActivation { None, ReLU }

/// <summary>Layout of the classifier head put on top of a backbone.</summary>
public sealed record HeadSpec
{
    public HeadKind Kind { get; init; } = HeadKind.Linear;
    /// <summary>Width of the hidden dense layer (<see cref="HeadKind.Mlp"/> only).</summary>
    public int HiddenUnits { get; init; } = 512;
    /// <summary>Dropout before each dense layer (<see cref="HeadKind.Mlp"/>; for VGG's own classifier, its two dropouts).</summary>
    public double Dropout { get; init; } = 0.5;
    /// <summary>Activation after the hidden layer. Keras' <c>Dense(512)</c> has none, as in Keras' DenseNet transfer-learning tutorials.</summary>
    public HeadActivation HiddenActivation { get; init; } = HeadActivation.None;

    /// <summary>The architecture's own classifier, resized to K classes (torchvision's fine-tuning recipe).</summary>
    public static HeadSpec Default { get; } = new();

    /// <summary>GAP → Dropout(0.5) → Dense(512) → Dropout(0.5) → Dense(K): the head of the Keras DenseNet121 recipe.</summary>
    public static HeadSpec KerasMlp(int hiddenUnits = 512, double dropout = 0.5, HeadActivation activation = HeadActivation.None)
        => new() { Kind = HeadKind.Mlp, HiddenUnits = hiddenUnits, Dropout = dropout, HiddenActivation = activation };

    internal void Validate()
    {
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "Dropout must be in [0, 1).");
        if (Kind == HeadKind.Mlp && HiddenUnits < 1) throw new ArgumentOutOfRangeException(nameof(HiddenUnits), HiddenUnits, "The hidden layer needs at least one unit.");
    }
}
