using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// Images already resized for the network (uint8 [3,S,S], 3·S² bytes each) with their class indices. The training
/// loop draws batches from it every epoch without decoding again.
/// </summary>
public sealed class LabeledImageSet : IDisposable
{
    readonly List<Tensor> _images = new();
    readonly List<int> _labels = new();

    public int Count => _images.Count;
    public IReadOnlyList<int> Labels => _labels;

    /// <summary>Adds an image; the set takes ownership of the tensor.</summary>
    public void Add(Tensor resizedImage, int label)
    {
        if (resizedImage.dtype != ScalarType.Byte || resizedImage.dim() != 3 || resizedImage.shape[0] != 3)
            throw new ArgumentException("Expected a uint8 tensor [3,S,S].", nameof(resizedImage));
        _images.Add(resizedImage);
        _labels.Add(label);
    }

    /// <summary>Stacks the given rows into a uint8 batch [N,3,S,S] and an int64 label vector.</summary>
    public (Tensor Images, Tensor Labels) Batch(ReadOnlySpan<int> rows)
    {
        var images = new Tensor[rows.Length];
        var labels = new long[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            images[i] = _images[rows[i]];
            labels[i] = _labels[rows[i]];
        }
        return (stack(images), tensor(labels));
    }

    /// <summary>Moves the given rows into a new set (stratified validation split); they leave this one.</summary>
    public LabeledImageSet Extract(IReadOnlyCollection<int> rows)
    {
        var taken = new HashSet<int>(rows);
        var result = new LabeledImageSet();
        var keepImages = new List<Tensor>();
        var keepLabels = new List<int>();
        for (int i = 0; i < _images.Count; i++)
        {
            if (taken.Contains(i)) result.Add(_images[i], _labels[i]);
            else { keepImages.Add(_images[i]); keepLabels.Add(_labels[i]); }
        }
        _images.Clear(); _images.AddRange(keepImages);
        _labels.Clear(); _labels.AddRange(keepLabels);
        return result;
    }

    /// <summary>Rows for a stratified validation split: per class, round(fraction·n) rows, at least one when the class has two or more.</summary>
    public IReadOnlyCollection<int> StratifiedSample(double fraction, Random random)
    {
        var chosen = new List<int>();
        foreach (var group in Enumerable.Range(0, Count).GroupBy(i => _labels[i]).OrderBy(g => g.Key))
        {
            var rows = group.ToArray();
            random.Shuffle(rows);
            int n = rows.Length < 2 ? 0 : Math.Clamp((int)Math.Round(rows.Length * fraction), 1, rows.Length - 1);
            chosen.AddRange(rows.Take(n));
        }
        return chosen;
    }

    public void Dispose()
    {
        foreach (var t in _images) t.Dispose();
        _images.Clear();
        _labels.Clear();
    }
}
