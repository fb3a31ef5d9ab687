using MLNet.ImageTransfer.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training.Optimizers;

/// <summary>
/// TorchSharp's Adam, AdamW and SGD with one change: the scalars of their update are created and disposed
/// explicitly. TorchSharp's own <c>step()</c> passes C# doubles where libtorch takes a <c>Scalar</c>, so every
/// parameter of every step makes about seven implicit <see cref="Scalar"/>s: finalizable wrappers of native memory
/// that nothing disposes. That costs twice:
/// <list type="bullet">
/// <item>Memory: they survive into older GC generations and their native halves wait for the finalizer, so both
/// heaps grow with the steps between collections (250,000 of them were pending in one 20,000-image run).</item>
/// <item>Safety: a collection on another thread can finalize a temporary while libtorch still reads it
/// (Engine/TorchScalars.cs, TorchSharp PR #1434).</item>
/// </list>
/// The arithmetic, the op order and the state (<c>exp_avg</c>, <c>exp_avg_sq</c>, <c>step</c>, <c>momentum_buffer</c>)
/// are TorchSharp's, so results are bit-identical to its optimizers (tests/…/Training/ScalarSafeOptimizerTests).
/// The classes keep TorchSharp's names on purpose: <c>save_state_dict</c> writes the class name and
/// <c>load_state_dict</c> checks it, so checkpoints stay interchangeable with TorchSharp's optimizers.
/// </summary>
internal static class ScalarSafeOptimizers
{
    /// <summary>Adam's and AdamW's hyper-parameters for one parameter group.</summary>
    internal readonly record struct AdamSettings(double Beta1, double Beta2, double Eps, double LearningRate, double WeightDecay, bool Amsgrad, bool Maximize)
    {
        public AdamSettings(TorchSharp.Modules.Adam.Options o)
            : this(o.beta1!.Value, o.beta2!.Value, o.eps!.Value, o.LearningRate!.Value, o.weight_decay!.Value, o.amsgrad!.Value, o.maximize!.Value) { }

        public AdamSettings(TorchSharp.Modules.AdamW.Options o)
            : this(o.beta1!.Value, o.beta2!.Value, o.eps!.Value, o.LearningRate!.Value, o.weight_decay!.Value, o.amsgrad!.Value, o.maximize!.Value) { }
    }

    /// <summary>The parameter's gradient (negated to maximize), or null when backward gave it none (the optimizers skip it).</summary>
    internal static Tensor? Gradient(TorchSharp.Modules.Parameter parameter, bool maximize)
        => parameter.grad is { } grad ? (maximize ? -grad : grad) : null;

    /// <summary>Adam's and AdamW's shared tail: moments, bias correction, and the update (TorchSharp's order).</summary>
    internal static void AdamUpdate(TorchSharp.Modules.Parameter parameter, Tensor grad, Tensor expAvg, Tensor expAvgSq, ref Tensor? maxExpAvgSq,
        long step, AdamSettings settings, bool conjugateSquare)
    {
        var (beta1, beta2, eps, lr, _, amsgrad, _) = settings;
        double biasCorrection1 = 1.0 - Math.Pow(beta1, step);
        double biasCorrection2 = 1.0 - Math.Pow(beta2, step);
        using var b1 = beta1.ToScalar();
        using var oneMinusB1 = (1.0 - beta1).ToScalar();
        using var b2 = beta2.ToScalar();
        using var oneMinusB2 = (1.0 - beta2).ToScalar();
        using var sqrtBc2 = Math.Sqrt(biasCorrection2).ToScalar();
        using var epsilon = eps.ToScalar();
        using var stepSize = (0.0 - lr / biasCorrection1).ToScalar();

        expAvg.mul_(b1).add_(grad, oneMinusB1);
        expAvgSq.mul_(b2).addcmul_(grad, conjugateSquare ? grad.conj() : grad, oneMinusB2);
        Tensor denominator;
        if (amsgrad)
        {
            var previous = maxExpAvgSq!;
            maxExpAvgSq = torch.maximum(previous, expAvgSq).DetachFromDisposeScope();
            previous.Dispose();
            denominator = maxExpAvgSq.sqrt().div(sqrtBc2).add_(epsilon, TorchScalars.One);
        }
        else
        {
            denominator = expAvgSq.sqrt().div(sqrtBc2).add_(epsilon, TorchScalars.One);
        }
        parameter.addcdiv_(expAvg, denominator, stepSize);
    }
}

/// <summary>TorchSharp's <see cref="TorchSharp.Modules.Adam"/> with disposed scalars (see <see cref="ScalarSafeOptimizers"/>).</summary>
internal sealed class Adam : TorchSharp.Modules.Adam
{
    public Adam(IEnumerable<TorchSharp.Modules.Parameter> parameters, double lr, double weightDecay) : base(parameters, lr: lr, weight_decay: weightDecay) { }

    public Adam(IEnumerable<ParamGroup> groups, double lr, double weightDecay) : base(groups, lr: lr, weight_decay: weightDecay) { }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var settings = new ScalarSafeOptimizers.AdamSettings(group.Options);
        using var decay = settings.WeightDecay.ToScalar();
        foreach (var parameter in group.Parameters)
        {
            if (ScalarSafeOptimizers.Gradient(parameter, settings.Maximize) is not { } grad) continue;
            var state = (State)_state[parameter.Handle];
            state.step++;
            if (settings.WeightDecay != 0) grad = grad.add(parameter, decay); // L2 penalty through the gradient
            ScalarSafeOptimizers.AdamUpdate(parameter, grad, state.exp_avg, state.exp_avg_sq, ref state.max_exp_avg_sq, state.step, settings, conjugateSquare: true);
        }
    }, closure);
}

/// <summary>TorchSharp's <see cref="TorchSharp.Modules.AdamW"/> with disposed scalars (see <see cref="ScalarSafeOptimizers"/>).</summary>
internal sealed class AdamW : TorchSharp.Modules.AdamW
{
    public AdamW(IEnumerable<TorchSharp.Modules.Parameter> parameters, double lr, double weightDecay) : base(parameters, lr: lr, weight_decay: weightDecay) { }

    public AdamW(IEnumerable<ParamGroup> groups, double lr, double weightDecay) : base(groups, lr: lr, weight_decay: weightDecay) { }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var settings = new ScalarSafeOptimizers.AdamSettings(group.Options);
        using var decoupledDecay = (1.0 - settings.LearningRate * settings.WeightDecay).ToScalar();
        foreach (var parameter in group.Parameters)
        {
            if (ScalarSafeOptimizers.Gradient(parameter, settings.Maximize) is not { } grad) continue;
            var state = (State)_state[parameter.Handle];
            state.step++;
            parameter.mul_(decoupledDecay); // decoupled weight decay, on the weights
            ScalarSafeOptimizers.AdamUpdate(parameter, grad, state.exp_avg, state.exp_avg_sq, ref state.max_exp_avg_sq, state.step, settings, conjugateSquare: false);
        }
    }, closure);
}

/// <summary>TorchSharp's <see cref="TorchSharp.Modules.SGD"/> with disposed scalars (see <see cref="ScalarSafeOptimizers"/>).</summary>
internal sealed class SGD : TorchSharp.Modules.SGD
{
    public SGD(IEnumerable<TorchSharp.Modules.Parameter> parameters, double lr, double momentum, double weightDecay) : base(parameters, lr, momentum: momentum, weight_decay: weightDecay) { }

    public SGD(IEnumerable<ParamGroup> groups, double lr, double momentum, double weightDecay) : base(groups, lr, momentum: momentum, weight_decay: weightDecay) { }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var o = group.Options;
        double momentum = o.momentum!.Value, dampening = o.dampening!.Value, weightDecay = o.weight_decay!.Value, lr = o.LearningRate!.Value;
        bool nesterov = o.nesterov!.Value, maximize = o.maximize!.Value;
        using var decay = weightDecay.ToScalar();
        using var mu = momentum.ToScalar();
        using var oneMinusDampening = (1.0 - dampening).ToScalar();
        using var rate = (maximize ? lr : 0.0 - lr).ToScalar();
        foreach (var parameter in group.Parameters)
        {
            var state = (State)_state[parameter.Handle];
            var grad = parameter.grad;
            if (grad is null) continue;
            if (weightDecay != 0) grad = grad.add(parameter, decay);
            if (momentum != 0)
            {
                var buffer = state.momentum_buffer;
                if (buffer is null) buffer = state.momentum_buffer = grad.clone().detach().DetachFromDisposeScope();
                else buffer.mul_(mu).add_(grad, oneMinusDampening);
                grad = nesterov ? grad.add(buffer, mu) : buffer;
            }
            parameter.add_(grad, rate);
        }
    }, closure);
}
