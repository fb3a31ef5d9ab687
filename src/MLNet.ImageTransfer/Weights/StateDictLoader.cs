using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights;

/// <summary>A key whose tensor exists on both sides with different shapes.</summary>
public sealed record ShapeMismatch(string Key, long[] ModelShape, long[] FileShape)
{
    public override string ToString() => $"{Key}: model [{string.Join(", ", ModelShape)}] vs file [{string.Join(", ", FileShape)}]";
}

/// <summary>What loading a set of named tensors into a module did (PyTorch's missing/unexpected keys, plus shape mismatches).</summary>
public sealed record WeightLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<ShapeMismatch> ShapeMismatches)
{
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatches.Count == 0;

    /// <summary>A readable multi-line summary listing the problem keys by name.</summary>
    public string Describe(int maxPerList = 20)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append($"{Loaded.Count} tensors loaded");
        void List(string title, IReadOnlyList<string> items)
        {
            if (items.Count == 0) return;
            sb.Append($"; {items.Count} {title}: ").Append(string.Join(", ", items.Take(maxPerList)));
            if (items.Count > maxPerList) sb.Append($", … ({items.Count - maxPerList} more)");
        }
        List("missing from the file", Missing);
        List("unexpected in the file", Unexpected);
        List("with mismatched shapes", ShapeMismatches.Select(m => m.ToString()).ToList());
        return sb.Append('.').ToString();
    }
}

/// <summary>
/// Copies named tensors into a module's parameters and buffers by <c>state_dict</c> key — never by position
/// (TorchSharp lists parameters before buffers, PyTorch interleaves them).
/// </summary>
public static class StateDictLoader
{
    /// <summary>
    /// Loads <paramref name="tensors"/> into <paramref name="module"/>. Keys for which <paramref name="skip"/> returns
    /// true are ignored on both sides (e.g. a classifier being replaced). With <paramref name="strict"/>, any missing,
    /// unexpected or mismatched key throws <see cref="WeightLoadException"/> before anything is modified.
    /// </summary>
    public static WeightLoadReport Load(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, bool strict = true, Func<string, bool>? skip = null, string? source = null)
    {
        skip ??= _ => false;
        var target = module.state_dict();
        var loaded = new List<string>();
        var missing = new List<string>();
        var mismatched = new List<ShapeMismatch>();
        var plan = new List<(Tensor Target, Tensor Source)>();
        foreach (var (key, t) in target)
        {
            if (skip(key)) continue;
            if (!tensors.TryGetValue(key, out var s)) { missing.Add(key); continue; }
            if (!t.shape.SequenceEqual(s.shape)) { mismatched.Add(new ShapeMismatch(key, t.shape, s.shape)); continue; }
            plan.Add((t, s));
            loaded.Add(key);
        }
        var unexpected = tensors.Keys.Where(k => !skip(k) && !target.ContainsKey(k)).ToList();
        var report = new WeightLoadReport(loaded, missing, unexpected, mismatched);
        if (strict && !report.IsExact)
            throw new WeightLoadException($"Weights{(source is null ? "" : $" from '{source}'")} do not fit the model: {report.Describe()}", report);

        using (no_grad())
        {
            foreach (var (t, s) in plan) t.copy_(s);
        }
        return report;
    }
}

/// <summary>
/// Weights that do not fit a model; <see cref="Report"/> names the keys. An <see cref="InvalidOperationException"/>
/// (the operation is invalid for this model and file).
/// </summary>
public sealed class WeightLoadException(string message, WeightLoadReport report) : InvalidOperationException(message)
{
    public WeightLoadReport Report { get; } = report;
}
