using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MLNet.ImageTransfer.MLNet.DataViews;

namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>
/// The mapping base over <see cref="MLImage"/> inputs from <c>LoadImages</c>, as the real classifier uses it: batches
/// hold several live images at once, which the loader disposes itself when it reuses a buffer.
/// </summary>
public sealed class ImageInputTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("mlnet-imagetransfer-images-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>Adds "MeanBgr" (3 floats) and "Size" (width, height) from one computed result per image.</summary>
    sealed class ImageStatsTransformer(IHostEnvironment env, int batchSize) : RowMappingTransformer<MLImage, float[]>(env, "ImageStats", "Image")
    {
        public int MapCalls;

        protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns { get; } =
        [
            OutputColumn<float[]>.Create("MeanBgr", new VectorDataViewType(NumberDataViewType.Single, 3),
                (float[] r, ref VBuffer<float> v) => v = new VBuffer<float>(3, r[..3])),
            OutputColumn<float[]>.Create("Size", new VectorDataViewType(NumberDataViewType.Single, 2),
                (float[] r, ref VBuffer<float> v) => v = new VBuffer<float>(2, r[3..])),
        ];

        protected override int BatchSize => batchSize;

        protected override void Map(ReadOnlySpan<MLImage> inputs, Span<float[]> results)
        {
            Interlocked.Increment(ref MapCalls);
            for (int i = 0; i < inputs.Length; i++)
            {
                var bgr = inputs[i].GetBGRPixels; // throws if the image was disposed under us
                var mean = new float[3];
                for (int p = 0; p < bgr.Length; p++) mean[p % 3] += bgr[p];
                int n = bgr.Length / 3;
                results[i] = [mean[0] / n, mean[1] / n, mean[2] / n, inputs[i].Width, inputs[i].Height];
            }
        }

        protected override void SaveModel(ModelSaveContext ctx) => throw new NotSupportedException();
    }

    public sealed class PathRow
    {
        public string ImagePath { get; set; } = "";
    }

    [Fact]
    public void Batches_of_loaded_images_give_the_same_results_as_single_images()
    {
        var ml = new MLContext(seed: 1);
        var rows = new List<PathRow>();
        for (int i = 0; i < 11; i++)
        {
            int w = 3 + i, h = 2 + i % 4;
            var pixels = new byte[w * h * 4];
            for (int p = 0; p < w * h; p++)
            {
                pixels[4 * p] = (byte)(10 * i);      // B
                pixels[4 * p + 1] = (byte)(p % 200); // G
                pixels[4 * p + 2] = 7;               // R
                pixels[4 * p + 3] = 255;             // A
            }
            using var image = MLImage.CreateFromPixels(w, h, MLPixelFormat.Bgra32, pixels);
            string name = $"img{i}.png";
            image.Save(Path.Combine(_dir, name));
            rows.Add(new PathRow { ImagePath = name });
        }
        var data = ml.Transforms.LoadImages("Image", _dir, "ImagePath").Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));

        List<float[]> Read(int batchSize, out int mapCalls)
        {
            var stats = new ImageStatsTransformer(ml, batchSize);
            var view = stats.Transform(data);
            var results = new List<float[]>();
            using (var cursor = view.GetRowCursor(view.Schema))
            {
                var mean = cursor.GetGetter<VBuffer<float>>(view.Schema["MeanBgr"]);
                var size = cursor.GetGetter<VBuffer<float>>(view.Schema["Size"]);
                VBuffer<float> m = default, s = default;
                while (cursor.MoveNext())
                {
                    mean(ref m);
                    size(ref s);
                    results.Add([.. m.DenseValues(), .. s.DenseValues()]);
                }
            }
            mapCalls = stats.MapCalls;
            return results;
        }

        var single = Read(1, out int singleCalls);
        var batched = Read(4, out int batchedCalls);
        Assert.Equal(11, singleCalls);
        Assert.Equal(3, batchedCalls);
        Assert.Equal(single.Count, batched.Count);
        for (int i = 0; i < single.Count; i++) Assert.Equal(single[i], batched[i]);
        Assert.Equal(10f, batched[1][0]); // row 1: blue 10, red 7, 4 x 3 pixels
        Assert.Equal(7f, batched[1][2]);
        Assert.Equal([4f, 3f], batched[1][3..]);
    }
}
