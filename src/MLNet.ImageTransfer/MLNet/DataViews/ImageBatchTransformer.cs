using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>
/// A <see cref="RowMappingTransformer{TInput, TResult}"/> from an image column to a float vector per row (class
/// probabilities, features): checks that the input holds images, and maps a batch by running only the rows that
/// have an image — a missing one (an unloadable file) gets a vector of NaN, ML.NET's missing value.
/// </summary>
public abstract class ImageBatchTransformer : RowMappingTransformer<MLImage, float[]>
{
    private protected ImageBatchTransformer(IHostEnvironment env, string registrationName, string inputColumnName)
        : base(env, registrationName, inputColumnName) { }

    /// <summary>Length of each row's vector.</summary>
    protected abstract int OutputLength { get; }

    /// <summary>One vector per image, in order (every image has pixels). Must be thread-safe.</summary>
    protected abstract float[][] MapImages(IReadOnlyList<MLImage> images);

    protected override void CheckInputColumn(DataViewSchema.Column column)
    {
        if (column.Type is not ImageDataViewType)
            throw new ArgumentException($"Column '{column.Name}' must hold images (from LoadImages), but is {column.Type}.", nameof(column));
    }

    protected sealed override void Map(ReadOnlySpan<MLImage> inputs, Span<float[]> results)
    {
        var present = new List<MLImage>(inputs.Length);
        var index = new List<int>(inputs.Length);
        for (int i = 0; i < inputs.Length; i++)
        {
            if (inputs[i] is { Width: > 0, Height: > 0 } image) { present.Add(image); index.Add(i); }
            else results[i] = Enumerable.Repeat(float.NaN, OutputLength).ToArray(); // no image → missing values
        }
        if (present.Count == 0) return;
        var mapped = MapImages(present);
        for (int j = 0; j < index.Count; j++) results[index[j]] = mapped[j];
    }
}
