using System.Text.Json;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Tests.Data;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Augmentation;

/// <summary>
/// <c>resized-crop</c> and <c>crop</c> against torchvision 0.14's <c>RandomResizedCrop</c> / <c>Resize</c> +
/// <c>RandomCrop</c> on PIL images (fixtures/photos, made by generate_photo_fixtures.py): the same random numbers give
/// the same boxes (the 10-attempt rule and the centre-crop fallback included), the same boxes give the same pixels
/// through the augmentation path training uses, and our own sampler draws boxes distributed as torchvision's.
/// </summary>
public class CropParityTests(ITestOutputHelper output)
{
    /// <summary>Replays torchvision's recorded draws: uniform numbers mapped back to [0, 1), then integers.</summary>
    sealed class Replay : Random
    {
        readonly Queue<double> _doubles = new();
        readonly Queue<int> _integers = new();

        public Replay(JsonElement attempts, double[] scale, double[] ratio)
        {
            double logMin = Math.Log(ratio[0]), logMax = Math.Log(ratio[1]);
            foreach (var attempt in attempts.EnumerateArray())
            {
                _doubles.Enqueue((attempt.GetProperty("scale").GetDouble() - scale[0]) / (scale[1] - scale[0]));
                _doubles.Enqueue((attempt.GetProperty("log_ratio").GetDouble() - logMin) / (logMax - logMin));
                if (attempt.TryGetProperty("top", out var top))
                {
                    _integers.Enqueue(top.GetInt32());
                    _integers.Enqueue(attempt.GetProperty("left").GetInt32());
                }
            }
        }

        public Replay(params int[] integers)
        {
            foreach (var i in integers) _integers.Enqueue(i);
        }

        public bool Consumed => _doubles.Count == 0 && _integers.Count == 0;
        public override double NextDouble() => _doubles.Dequeue();

        public override int Next(int minValue, int maxValue)
        {
            int value = _integers.Dequeue();
            Assert.InRange(value, minValue, maxValue - 1);
            return value;
        }
    }

    static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(v => v.GetDouble()).ToArray();

    static (int Top, int Left, int Height, int Width) Box(JsonElement box)
        => (box.GetProperty("top").GetInt32(), box.GetProperty("left").GetInt32(), box.GetProperty("height").GetInt32(), box.GetProperty("width").GetInt32());

    [Fact]
    public void The_same_random_numbers_give_torchvisions_boxes()
    {
        int fallbacks = 0, rejected = 0, cases = 0;
        foreach (var record in PhotoFixtures.Root.GetProperty("draws").EnumerateArray())
        {
            var scale = Doubles(record.GetProperty("scale"));
            var ratio = Doubles(record.GetProperty("ratio"));
            var op = new RandomResizedCrop(new ParameterRange(scale[0], scale[1]), new ParameterRange(ratio[0], ratio[1]));
            var attempts = record.GetProperty("attempts");
            var random = new Replay(attempts, scale, ratio);
            var box = op.DrawBox(random, record.GetProperty("width").GetInt32(), record.GetProperty("height").GetInt32());
            Assert.Equal(Box(record.GetProperty("box")), box);
            Assert.True(random.Consumed);
            cases++;
            if (record.GetProperty("fallback").GetBoolean()) fallbacks++;
            rejected += attempts.GetArrayLength() - (record.GetProperty("fallback").GetBoolean() ? 0 : 1);
        }
        output.WriteLine($"{cases} recorded draws: {fallbacks} centre-crop fallbacks, {rejected} rejected attempts");
        Assert.True(fallbacks >= 6 && rejected >= 20, "the recordings exercise the fallback and rejected attempts");
    }

    /// <summary>
    /// The photos through the augmenter as training runs it: cached as training caches them (resized-crop: the whole
    /// photo; crop: torchvision's Resize(73)), torchvision's draws replayed, the batch compared with torchvision's pixels.
    /// </summary>
    [Theory]
    [MemberData(nameof(PhotoParityTests.Names), MemberType = typeof(PhotoParityTests))]
    public void Crops_of_the_same_draws_give_torchvisions_pixels(string name)
    {
        var photo = PhotoFixtures.Named(name);
        using var image = ImageDecoder.Decode(photo.Jpeg);
        var json = PhotoFixtures.Root.GetProperty("photos").EnumerateArray().Single(p => p.GetProperty("name").GetString() == name);
        foreach (var c in photo.Cases.Where(c => c.Kind is "resized_crop" or "crop"))
        {
            var spec = json.GetProperty("cases").EnumerateArray().Single(e => e.GetProperty("id").GetString() == c.Id);
            AugmentationPipeline pipeline;
            ImagePreprocessing preprocessing;
            Replay random;
            if (c.Kind == "resized_crop")
            {
                pipeline = AugmentationPipeline.Parse("resized-crop(scale=0.08:1,ratio=0.75:1.3333333333333333)");
                preprocessing = ImagePreprocessing.TorchVision(c.Size);
                random = new Replay(spec.GetProperty("attempts"), [0.08, 1], [0.75, 4.0 / 3]);
            }
            else
            {
                pipeline = AugmentationPipeline.Parse("crop");
                preprocessing = ImagePreprocessing.TorchVision(c.Size) with { CropFraction = c.CropFraction };
                Assert.Equal(c.Resize, preprocessing.ResizeShorterSide);
                random = new Replay(c.Top, c.Left);
            }
            var source = AugmentationSource.For(preprocessing, pipeline);
            // resized-crop: the photo at full resolution, as the cache keeps photos of this size for 224-pixel crops
            // (at 80 pixels the cache would keep less; see the next test).
            var plan = c.Kind == "resized_crop" ? ResizeCrop.Whole(image.Width, image.Height) : source.Plan(image.Width, image.Height);
            if (c.Kind == "resized_crop")
            {
                var at224 = AugmentationSource.For(ImagePreprocessing.TorchVision(224), pipeline).Plan(image.Width, image.Height);
                Assert.Equal((image.Width, image.Height), (at224.Width, at224.Height));
            }
            var cached = new byte[3 * plan.Width * plan.Height];
            using (var pixels = ImageGeometry.OpaquePixels.Of(image))
                ImageGeometry.Resample(pixels.Source, plan, cached, source.Layout, preprocessing.Channels);
            using var set = new Training.LabeledImageSet { Source = source };
            set.Add(cached, plan.Height, plan.Width, 0);

            using var scope = NewDisposeScope();
            var augmenter = new ImageAugmenter(pipeline, c.Size, preprocessing.Channels);
            var batch = augmenter.Apply(SourceImages.FromSet(set, [0]), source, random);
            Assert.True(random.Consumed);
            var ours = batch[0].round().to_type(ScalarType.Byte).contiguous().data<byte>().ToArray();
            var (expected, _, _) = PhotoFixtures.ReadPng(c.File);
            var (max, differing) = PhotoFixtures.CompareChw(ours, expected, c.Size, c.Size);
            output.WriteLine($"{name} {c.Id}: box {c.Top},{c.Left} {c.Width}×{c.Height}: max |Δ| {max}, {differing} values differ");
            Assert.True(max == 0, $"{name} {c.Id}: max |Δ| {max}");
        }
    }

    /// <summary>
    /// What the cache's resolution rule costs. resized-crop's cache keeps a photo at the scale where its smallest crop
    /// (8% of the area, ratio 3/4) is still <see cref="AugmentationSource.CropResolutionMargin"/>·S pixels across, so
    /// large photos are kept smaller than decoded and their crops are resampled twice. The fixtures' photos are small
    /// (at 224 pixels every one is kept whole), so this looks at 32- and 48-pixel crops: boxes drawn on the full photo,
    /// cut from it at full resolution (the computation shown equal to torchvision's above) and from the cache, the box
    /// mapped exactly onto the smaller image. For comparison, a margin of 1 (the smallest crop exactly S pixels across):
    /// its second resampling is then nearly 1:1, the blurriest case.
    /// </summary>
    [Fact]
    public void Crops_from_a_cache_below_full_resolution_stay_close_to_the_full_resolution_crop()
    {
        var op = new RandomResizedCrop();
        var pipeline = new AugmentationPipeline([op]);
        var means = new SortedDictionary<double, List<double>> { [1] = [], [AugmentationSource.CropResolutionMargin] = [] };
        foreach (var photo in PhotoFixtures.Photos)
        {
            using var image = ImageDecoder.Decode(photo.Jpeg);
            var rgb = PhotoFixtures.ToRgb(image);
            var full = PixelSource.Rgb(rgb, image.Width, image.Height);
            foreach (int size in new[] { 32, 48 })
                foreach (var margin in means.Keys)
                {
                    // The rule: f = min(1, margin · S / √(a·ρ·A)), a = 0.08, ρ = 3/4.
                    double f = Math.Min(1, margin * size / Math.Sqrt(0.08 * 0.75 * image.Width * image.Height));
                    if (f >= 1) continue;
                    var plan = ResizeCrop.Whole((int)Math.Round(image.Width * f), (int)Math.Round(image.Height * f));
                    if (margin == AugmentationSource.CropResolutionMargin)
                        Assert.Equal(plan, AugmentationSource.For(ImagePreprocessing.TorchVision(size), pipeline).Plan(image.Width, image.Height));
                    var cached = new byte[3 * plan.Width * plan.Height];
                    ImageGeometry.Resample(full, plan, cached, PillowResample.OutputLayout.Interleaved3, ChannelOrder.Rgb);
                    double fx = (double)plan.Width / image.Width, fy = (double)plan.Height / image.Height;
                    var random = new Random(size);
                    var (reference, ours) = (new byte[3 * size * size], new byte[3 * size * size]);
                    double sum = 0;
                    for (int k = 0; k < 20; k++)
                    {
                        var (top, left, h, w) = op.DrawBox(random, image.Width, image.Height);
                        ImageGeometry.Resample(full, left, top, w, h, ResizeCrop.Whole(size, size), reference, PillowResample.OutputLayout.Planar3, ChannelOrder.Rgb);
                        PillowResample.Resample(cached, plan.Width * 3, 3, 0, 0,
                            PillowResample.Coefficients(plan.Width, left * fx, (left + w) * fx, size),
                            PillowResample.Coefficients(plan.Height, top * fy, (top + h) * fy, size),
                            ours, PillowResample.OutputLayout.Planar3, [0, 1, 2]);
                        for (int i = 0; i < ours.Length; i++) sum += Math.Abs(ours[i] - reference[i]);
                    }
                    double mean = sum / (20.0 * ours.Length);
                    means[margin].Add(mean);
                    output.WriteLine($"margin {margin}, {size} px: {photo.Name} cached at {plan.Width}×{plan.Height} of {image.Width}×{image.Height}: mean |Δ| {mean:F2} over 20 crops");
                }
        }
        foreach (var (margin, values) in means)
            output.WriteLine($"margin {margin}: mean |Δ| {values.Average():F2} (worst photo {values.Max():F2}) over {values.Count} photo sizes");
        Assert.True(means[AugmentationSource.CropResolutionMargin].Count >= 4);
        Assert.True(means[AugmentationSource.CropResolutionMargin].Max() < 1.0, "crops from the cache stay within a grey level of the full-resolution crop on average");
        Assert.True(means[AugmentationSource.CropResolutionMargin].Average() < means[1].Average());
    }

    /// <summary>
    /// Our sampler with its own random numbers against torchvision's box statistics (20,000 draws each, in the
    /// fixture): histograms of the area fraction and of log(width/height) by a two-sample χ² test (p = 0.001 bound,
    /// 19 degrees of freedom), and the mean area, log ratio and centre position.
    /// </summary>
    [Fact]
    public void Our_sampler_draws_boxes_distributed_as_torchvisions()
    {
        const double ChiSquareBound = 43.82; // χ²(19) at p = 0.001
        foreach (var stats in PhotoFixtures.Root.GetProperty("box_statistics").EnumerateArray())
        {
            int width = stats.GetProperty("width").GetInt32(), height = stats.GetProperty("height").GetInt32();
            var scale = Doubles(stats.GetProperty("scale"));
            var ratio = Doubles(stats.GetProperty("ratio"));
            int bins = stats.GetProperty("bins").GetInt32();
            var logRange = Doubles(stats.GetProperty("log_ratio_range"));
            var op = new RandomResizedCrop(new ParameterRange(scale[0], scale[1]), new ParameterRange(ratio[0], ratio[1]));
            var random = new Random(width * 7 + height);
            const int n = 10_000;
            var areaHistogram = new long[bins];
            var logHistogram = new long[bins];
            double areaSum = 0, logSum = 0, cxSum = 0, cySum = 0;
            for (int i = 0; i < n; i++)
            {
                var (top, left, h, w) = op.DrawBox(random, width, height);
                double area = (double)h * w / (width * height), log = Math.Log((double)w / h);
                areaHistogram[Math.Min(bins - 1, (int)(area * bins))]++;
                logHistogram[Math.Clamp((int)((log - logRange[0]) / (logRange[1] - logRange[0]) * bins), 0, bins - 1)]++;
                areaSum += area;
                logSum += log;
                cxSum += (left + w / 2.0) / width;
                cySum += (top + h / 2.0) / height;
            }
            long theirs = stats.GetProperty("draws").GetInt64();
            double areaChi = ChiSquare(areaHistogram, stats.GetProperty("area_histogram"), n, theirs);
            double logChi = ChiSquare(logHistogram, stats.GetProperty("log_ratio_histogram"), n, theirs);
            output.WriteLine($"{width}×{height} scale {scale[0]}–{scale[1]}: χ² area {areaChi:F1}, log ratio {logChi:F1}; mean area {areaSum / n:F4} " +
                $"(torchvision {stats.GetProperty("mean_area").GetDouble():F4}), mean log ratio {logSum / n:F4} ({stats.GetProperty("mean_log_ratio").GetDouble():F4}), " +
                $"centre {cxSum / n:F3},{cySum / n:F3} ({stats.GetProperty("mean_centre_x").GetDouble():F3},{stats.GetProperty("mean_centre_y").GetDouble():F3})");
            Assert.InRange(areaChi, 0, ChiSquareBound);
            Assert.InRange(logChi, 0, ChiSquareBound);
            Assert.InRange(areaSum / n - stats.GetProperty("mean_area").GetDouble(), -0.01, 0.01);
            Assert.InRange(logSum / n - stats.GetProperty("mean_log_ratio").GetDouble(), -0.01, 0.01);
            Assert.InRange(cxSum / n - stats.GetProperty("mean_centre_x").GetDouble(), -0.01, 0.01);
            Assert.InRange(cySum / n - stats.GetProperty("mean_centre_y").GetDouble(), -0.01, 0.01);
        }
    }

    /// <summary>Two-sample χ² of binned counts (Press et al., Numerical Recipes §14.3), over the bins either sample reaches.</summary>
    static double ChiSquare(long[] ours, JsonElement theirs, long n1, long n2)
    {
        double k1 = Math.Sqrt((double)n2 / n1), k2 = Math.Sqrt((double)n1 / n2), chi = 0;
        int i = 0;
        foreach (var value in theirs.EnumerateArray())
        {
            long a = ours[i++], b = value.GetInt64();
            if (a + b > 0) chi += Math.Pow(k1 * a - k2 * b, 2) / (a + b);
        }
        return chi;
    }
}
