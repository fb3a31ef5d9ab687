using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.Tests.Persistence;

public sealed class ToyRow
{
    public string Label { get; set; } = "";

    [VectorType(ToyData.Dimensions)]
    public float[] Features { get; set; } = [];
}

public sealed class ToyPrediction
{
    public string PredictedLabel { get; set; } = "";
    public float[] Score { get; set; } = [];
}

internal static class ToyData
{
    public const int Dimensions = 4;

    public static readonly string[] Classes = ["cat", "dog", "bird"];

    static readonly float[][] Centers =
    [
        [0f, 0f, 0f, 0f],
        [3f, 3f, 0f, 0f],
        [0f, 3f, 3f, 3f],
    ];

    /// <summary><paramref name="n"/> rows cycling through the classes (first seen: cat, dog, bird), Gaussian-ish noise.</summary>
    public static ToyRow[] Make(int n, int seed, float noise = 0.6f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(i =>
        {
            int c = i % Classes.Length;
            var x = Centers[c].Select(v => v + noise * (float)(rng.NextDouble() + rng.NextDouble() + rng.NextDouble() - 1.5)).ToArray();
            return new ToyRow { Label = Classes[c], Features = x };
        }).ToArray();
    }
}
