using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// The one contract every architecture family implements (timm's uniform model API): a backbone that turns images
/// into a feature map, a head that pools it and classifies, a replaceable classifier, and named layer groups for
/// freezing. Module names and <c>state_dict</c> keys equal torchvision's, so torchvision/timm weights load by name.
/// </summary>
public abstract class ImageClassifierModel : TorchvisionModule
{
    protected ImageClassifierModel(string name, ArchitectureConfig config, HeadSpec head, int numClasses) : base(name)
    {
        if (numClasses < 1) throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "A classifier needs at least one class.");
        Config = config;
        Head = head;
        NumClasses = numClasses;
    }

    /// <summary>The configuration the network was built from (saved with every model).</summary>
    public ArchitectureConfig Config { get; }

    /// <summary>The classifier head layout.</summary>
    public HeadSpec Head { get; private set; }

    /// <summary>Number of output classes of the classifier.</summary>
    public int NumClasses { get; private set; }

    /// <summary>Channels of the backbone's final feature map (the input width of a global-pooling head).</summary>
    public abstract int NumFeatures { get; }

    /// <summary>The <c>state_dict</c> prefix of the replaceable classifier (<c>classifier</c> or <c>fc</c>).</summary>
    public abstract string ClassifierName { get; }

    /// <summary>
    /// The module (torchvision path) whose output Grad-CAM explains by default: the last convolutional stage, whose
    /// feature map still has spatial resolution (Selvaraju et al.; pytorch-grad-cam's choices).
    /// </summary>
    public abstract string DefaultCamLayer { get; }

    /// <summary>Backbone only: image batch [N,3,H,W] → feature map [N,C,h,w].</summary>
    public Tensor ForwardFeatures(Tensor images) => ForwardStages(images, 0, StageCount);

    /// <summary>The backbone's stages: one per backbone layer group of <see cref="LayerGroups"/>, in order.</summary>
    public int StageCount => LayerGroups.Count(g => !g.IsHead);

    /// <summary>
    /// Runs backbone stages <paramref name="from"/> to <paramref name="to"/> − 1 on <paramref name="input"/> — the
    /// images when <paramref name="from"/> is 0, else the output of stage <paramref name="from"/> − 1. Running all
    /// stages is <see cref="ForwardFeatures"/>. Lets training keep the output of stages that stay frozen and run only
    /// the rest (Training/FeatureCache.cs).
    /// </summary>
    public abstract Tensor ForwardStages(Tensor input, int from, int to);

    /// <summary>Runs modules in order, disposing each intermediate result (never the caller's <paramref name="input"/>).</summary>
    private protected static Tensor RunInOrder(Tensor input, IEnumerable<nn.Module<Tensor, Tensor>> modules)
    {
        var x = input;
        foreach (var module in modules)
        {
            var next = module.call(x);
            if (!ReferenceEquals(x, input)) x.Dispose();
            x = next;
        }
        return ReferenceEquals(x, input) ? input.alias() : x;
    }

    private protected static void CheckStageRange(int from, int to, int count)
    {
        if (from < 0 || to > count || from > to)
            throw new ArgumentOutOfRangeException(nameof(from), $"Stages {from}..{to} are outside the backbone's 0..{count}.");
    }

    /// <summary>Pooling + classifier: feature map → logits [N,K].</summary>
    public abstract Tensor ForwardHead(Tensor features);

    /// <summary>Global-average-pooled backbone features [N,C] (the ML.NET featurizer's output).</summary>
    public Tensor ForwardPooledFeatures(Tensor images)
    {
        using var fm = ForwardFeatures(images);
        return nn.functional.adaptive_avg_pool2d(fm, new long[] { 1, 1 }).flatten(1);
    }

    public override Tensor forward(Tensor images)
    {
        using var features = ForwardFeatures(images);
        return ForwardHead(features);
    }

    /// <summary>
    /// Backbone groups from input to output (stem, stages …), then the head last. Freezing "all but the last K
    /// blocks" and discriminative learning rates work on these groups.
    /// </summary>
    public abstract IReadOnlyList<LayerGroup> LayerGroups { get; }

    /// <summary>The classifier module currently installed.</summary>
    protected abstract nn.Module<Tensor, Tensor> Classifier { get; set; }

    /// <summary>
    /// Replaces the classifier by a freshly initialised one for <paramref name="numClasses"/> classes (torchvision's
    /// "replace fc", timm's <c>reset_classifier</c>). The backbone is untouched.
    /// </summary>
    public void ResetClassifier(int numClasses, HeadSpec? head = null)
    {
        if (numClasses < 1) throw new ArgumentOutOfRangeException(nameof(numClasses));
        var newHead = head ?? Head;
        var old = Classifier;
        var device = parameters().FirstOrDefault()?.device;
        var replacement = BuildClassifier(newHead, numClasses);
        if (device is not null) replacement.to(device);
        Classifier = replacement;
        register_module(ClassifierName, null!); // TorchSharp refuses to re-register a name; null unregisters it
        register_module(ClassifierName, replacement);
        old.Dispose();
        Head = newHead;
        NumClasses = numClasses;
    }

    /// <summary>Builds the classifier for a head layout; also used by the constructors.</summary>
    protected abstract nn.Module<Tensor, Tensor> BuildClassifier(HeadSpec head, int numClasses);

    /// <summary>The pooled width the classifier sees for a global-pooling head.</summary>
    protected nn.Module<Tensor, Tensor> BuildPooledHead(HeadSpec head, int inFeatures, int numClasses)
        => head.Kind switch
        {
            HeadKind.Linear => Init.Linear(nn.Linear(inFeatures, numClasses)),
            HeadKind.Mlp => BuildMlpHead(head, inFeatures, numClasses),
            _ => throw new ArgumentOutOfRangeException(nameof(head), head.Kind, "Unknown head kind."),
        };

    static nn.Module<Tensor, Tensor> BuildMlpHead(HeadSpec head, int inFeatures, int numClasses)
    {
        // Keras-style head (Keras' transfer-learning tutorials): GAP → Dropout → Dense(hidden) → Dropout → Dense(K). Module indices are stable
        // so that a saved head reloads by name: 0 dropout, 1 linear, 2 activation (Identity when none), 3 dropout, 4 linear.
        nn.Module<Tensor, Tensor> activation = head.HiddenActivation switch
        {
            HeadActivation.None => nn.Identity(),
            HeadActivation.ReLU => nn.ReLU(),
            _ => throw new ArgumentOutOfRangeException(nameof(head), head.HiddenActivation, "Unknown activation."),
        };
        return nn.Sequential(
            ("0", nn.Dropout(head.Dropout)),
            ("1", Init.Linear(nn.Linear(inFeatures, head.HiddenUnits))),
            ("2", activation),
            ("3", nn.Dropout(head.Dropout)),
            ("4", Init.Linear(nn.Linear(head.HiddenUnits, numClasses))));
    }
}

/// <summary>A named set of modules that are frozen / unfrozen / given a learning rate together.</summary>
public sealed record LayerGroup(string Name, IReadOnlyList<nn.Module> Modules, bool IsHead)
{
    public IEnumerable<Parameter> Parameters() => Modules.SelectMany(m => m.parameters());
}

/// <summary>Weight initialisation as torchvision does it, in one place.</summary>
internal static class Init
{
    public static Conv2d ConvKaimingFanOut(Conv2d conv)
    {
        using var _ = no_grad();
        nn.init.kaiming_normal_(conv.weight, mode: nn.init.FanInOut.FanOut, nonlinearity: nn.init.NonlinearityType.ReLU);
        if (conv.bias is not null) nn.init.zeros_(conv.bias);
        return conv;
    }

    public static BatchNorm2d BatchNorm(BatchNorm2d bn)
    {
        using var _ = no_grad();
        nn.init.ones_(bn.weight);
        nn.init.zeros_(bn.bias);
        return bn;
    }

    /// <summary>Linear layers keep PyTorch's default weight init; torchvision zeroes the bias.</summary>
    public static Linear Linear(Linear linear)
    {
        using var _ = no_grad();
        if (linear.bias is not null) nn.init.zeros_(linear.bias);
        return linear;
    }

    /// <summary>VGG's classifier init: N(0, 0.01) weights, zero bias.</summary>
    public static Linear LinearNormal(Linear linear, double std)
    {
        using var _ = no_grad();
        nn.init.normal_(linear.weight, 0, std);
        if (linear.bias is not null) nn.init.zeros_(linear.bias);
        return linear;
    }
}
