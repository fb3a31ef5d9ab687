using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Safe = MLNet.ImageTransfer.Training.Optimizers;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>
/// The scalar-safe optimizers (Training/Optimizers) against TorchSharp's own: same parameters, same gradients, a
/// learning rate that changes between steps, two parameter groups and a parameter without a gradient; after every
/// step the weights and the whole optimizer state (as <c>save_state_dict</c> writes it, class name included, so
/// checkpoints of either load in the other) must be bit-identical.
/// </summary>
public class ScalarSafeOptimizerTests
{
    public static TheoryData<string> Cases => new() { "adam", "adam-amsgrad-maximize", "adamw", "adamw-amsgrad", "sgd", "sgd-nesterov", "sgd-plain" };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Steps_are_bit_identical_to_TorchSharp(string kind)
    {
        using var ours = Parameters(seed: 7);
        using var theirs = Parameters(seed: 7);
        var (safe, reference) = Create(kind, ours.Parameters, theirs.Parameters);
        using (safe)
        using (reference)
        {
            var generator = new Random(3);
            for (int step = 1; step <= 6; step++)
            {
                foreach (var (optimizer, set) in new[] { ((optim.Optimizer)safe, ours), (reference, theirs) })
                {
                    // Layer-wise rates that move like a schedule would.
                    int g = 0;
                    foreach (var group in optimizer.ParamGroups) group.LearningRate = 0.01 * (g++ + 1) / step;
                }
                for (int i = 0; i < ours.Parameters.Length; i++)
                {
                    bool hasGradient = !(i == 2 && step % 2 == 0); // a parameter that sometimes gets no gradient is skipped
                    var values = Enumerable.Range(0, (int)ours.Parameters[i].numel()).Select(_ => (float)(generator.NextDouble() * 2 - 1)).ToArray();
                    ours.Parameters[i].grad = hasGradient ? tensor(values, ours.Parameters[i].shape) : null;
                    theirs.Parameters[i].grad = hasGradient ? tensor(values, theirs.Parameters[i].shape) : null;
                }
                safe.step();
                reference.step();
                for (int i = 0; i < ours.Parameters.Length; i++)
                    Assert.True(ours.Parameters[i].equal(theirs.Parameters[i]).all().item<bool>(), $"{kind}: parameter {i} differs after step {step}.");
                Assert.Equal(State(reference), State(safe));
            }
        }
    }

    static (OptimizerHelper Safe, OptimizerHelper Reference) Create(string kind, Parameter[] ours, Parameter[] theirs)
    {
        bool amsgrad = kind.Contains("amsgrad"), maximize = kind.Contains("maximize"), nesterov = kind.Contains("nesterov");
        // Two groups at different rates; amsgrad, maximize and nesterov are options the trainer does not use, compared too.
        return kind switch
        {
            "adam" or "adam-amsgrad-maximize" => (
                new Safe.Adam([new Adam.ParamGroup(ours[..2], 0.01, weight_decay: 0.01, amsgrad: amsgrad, maximize: maximize), new Adam.ParamGroup(ours[2..], 0.02, weight_decay: 0.01, amsgrad: amsgrad, maximize: maximize)], 0.01, 0.01),
                optim.Adam([new Adam.ParamGroup(theirs[..2], 0.01, weight_decay: 0.01, amsgrad: amsgrad, maximize: maximize), new Adam.ParamGroup(theirs[2..], 0.02, weight_decay: 0.01, amsgrad: amsgrad, maximize: maximize)], lr: 0.01, weight_decay: 0.01)),
            "adamw" or "adamw-amsgrad" => (
                new Safe.AdamW([new AdamW.ParamGroup(ours[..2], 0.01, weight_decay: 0.05, amsgrad: amsgrad), new AdamW.ParamGroup(ours[2..], 0.02, weight_decay: 0.05, amsgrad: amsgrad)], 0.01, 0.05),
                optim.AdamW([new AdamW.ParamGroup(theirs[..2], 0.01, weight_decay: 0.05, amsgrad: amsgrad), new AdamW.ParamGroup(theirs[2..], 0.02, weight_decay: 0.05, amsgrad: amsgrad)], lr: 0.01, weight_decay: 0.05)),
            "sgd" or "sgd-nesterov" => (
                new Safe.SGD([new SGD.ParamGroup(ours[..2], 0.01, momentum: 0.9, weight_decay: 1e-3, nesterov: nesterov), new SGD.ParamGroup(ours[2..], 0.02, momentum: 0.9, dampening: nesterov ? 0 : 0.1, weight_decay: 1e-3, nesterov: nesterov)], 0.01, 0.9, 1e-3),
                optim.SGD([new SGD.ParamGroup(theirs[..2], 0.01, momentum: 0.9, weight_decay: 1e-3, nesterov: nesterov), new SGD.ParamGroup(theirs[2..], 0.02, momentum: 0.9, dampening: nesterov ? 0 : 0.1, weight_decay: 1e-3, nesterov: nesterov)], 0.01, momentum: 0.9, weight_decay: 1e-3)),
            "sgd-plain" => (new Safe.SGD(ours, 0.01, 0, 0), optim.SGD(theirs, 0.01)),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
    }

    static byte[] State(OptimizerHelper optimizer)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) optimizer.save_state_dict(writer);
        return stream.ToArray();
    }

    sealed class ParameterSet(Parameter[] parameters) : IDisposable
    {
        public Parameter[] Parameters { get; } = parameters;
        public void Dispose() { foreach (var p in Parameters) p.Dispose(); }
    }

    static ParameterSet Parameters(int seed)
    {
        var generator = new Random(seed);
        Parameter Make(params long[] shape)
            => new(tensor(Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)(generator.NextDouble() - 0.5)).ToArray(), shape));
        return new ParameterSet([Make(4, 3), Make(4), Make(2, 4), Make(2)]);
    }
}
