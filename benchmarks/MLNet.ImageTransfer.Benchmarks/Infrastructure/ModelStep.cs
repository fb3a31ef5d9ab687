using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// One training step (train mode, forward, cross-entropy, backward, Adam step) or one inference step (eval mode,
/// no_grad, forward) of a named architecture on a fixed random batch: exactly what pytorch_reference.py's
/// <c>train</c>/<c>infer</c> cases do with torchvision's classes.
/// </summary>
public sealed class ModelStep : IDisposable
{
    readonly ImageClassifierModel _model;
    readonly optim.Optimizer? _optimizer;
    readonly Tensor _images, _labels;

    public ModelStep(string architecture, int imageSize, int batchSize, bool training, int classes = 10, int seed = 0)
    {
        torch.manual_seed(seed);
        _model = Architectures.Create(architecture, classes);
        Training = training;
        if (training)
        {
            _model.train();
            _optimizer = optim.Adam(_model.parameters(), 1e-4);
        }
        else _model.eval();
        _images = torch.randn(batchSize, 3, imageSize, imageSize);
        _labels = torch.randint(0, classes, batchSize, dtype: ScalarType.Int64);
    }

    public bool Training { get; }

    /// <summary>Seconds of each training step's phases (forward incl. loss, backward, zero_grad + Adam step), every step so far.</summary>
    public List<(double Forward, double Backward, double Optimizer)> Phases { get; } = [];

    public float Step()
    {
        using var scope = NewDisposeScope();
        if (Training)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var loss = nn.functional.cross_entropy(_model.call(_images), _labels);
            long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
            loss.backward();
            long t2 = System.Diagnostics.Stopwatch.GetTimestamp();
            _optimizer!.step();
            _optimizer.zero_grad();
            long t3 = System.Diagnostics.Stopwatch.GetTimestamp();
            Phases.Add((Seconds(t0, t1), Seconds(t1, t2), Seconds(t2, t3)));
            return loss.item<float>();
        }
        using var _ = no_grad();
        return _model.call(_images).sum().item<float>();
    }

    static double Seconds(long from, long to) => System.Diagnostics.Stopwatch.GetElapsedTime(from, to).TotalSeconds;

    public void Dispose()
    {
        _optimizer?.Dispose();
        _model.Dispose();
        _images.Dispose();
        _labels.Dispose();
    }
}

/// <summary>fp32 matrix product C = A·B of n×n matrices through libtorch (TorchSharp's bundled BLAS): 2n³ FLOP per step.</summary>
public sealed class GemmStep : IDisposable
{
    readonly Tensor _a, _b;

    public GemmStep(int n)
    {
        N = n;
        torch.manual_seed(0);
        _a = torch.randn(n, n);
        _b = torch.randn(n, n);
    }

    public int N { get; }
    public double FlopPerStep => 2.0 * N * N * N;

    public void Step() => _a.mm(_b).Dispose();

    public void Dispose()
    {
        _a.Dispose(); _b.Dispose();
    }
}
