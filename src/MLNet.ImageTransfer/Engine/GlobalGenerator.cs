namespace MLNet.ImageTransfer.Engine;

/// <summary>
/// TorchSharp's default random generator is process-wide: weight initialisation and dropout draw from it. Code that
/// seeds it and then draws (seed → build a network) holds this lock so that concurrent trainings cannot interleave.
/// Dropout during training still shares the generator: bit-identical results need one training at a time per process.
/// </summary>
internal static class GlobalGenerator
{
    public static readonly object Gate = new();
}
