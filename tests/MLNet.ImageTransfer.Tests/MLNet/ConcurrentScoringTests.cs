using Microsoft.ML;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Tests.MLNet;

/// <summary>A loaded model scored from several threads (a PredictionEngine per thread, as ML.NET recommends) gives the serial results.</summary>
public class ConcurrentScoringTests
{
    sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    sealed class Prediction
    {
        public string PredictedLabel { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    [Fact]
    public void Eight_threads_score_exactly_like_one()
    {
        var root = TestData.ShapesFolder();
        var ml = new MLContext(seed: 1);
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, TestData.TinyOptions(epochs: 1));
        var path = Path.Combine(TestData.NewTempDir("threads"), "m.zip");
        trained.Save(ml, path);

        var scoring = new MLContext().RegisterImageTransfer();
        var model = scoring.Model.Load(path, out _);
        var rows = ImageFolder.Scan(root).Images.Select(e => new Row { ImagePath = Path.Combine(root, e.ImagePath) }).ToArray();
        Prediction[] Serial()
        {
            using var engine = scoring.Model.CreatePredictionEngine<Row, Prediction>(model);
            return rows.Select(r => engine.Predict(r)).ToArray();
        }
        var expected = Serial();

        var results = new Prediction[8][];
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            using var engine = scoring.Model.CreatePredictionEngine<Row, Prediction>(model);
            // Each thread walks the rows in its own order so calls interleave differently.
            var order = Enumerable.Range(0, rows.Length).OrderBy(i => (i * 7 + t * 13) % rows.Length).ToArray();
            var mine = new Prediction[rows.Length];
            foreach (var i in order) mine[i] = engine.Predict(rows[i]);
            results[t] = mine;
        });
        foreach (var threadResults in results)
            for (int i = 0; i < rows.Length; i++)
            {
                Assert.Equal(expected[i].PredictedLabel, threadResults[i].PredictedLabel);
                Assert.Equal(expected[i].Score, threadResults[i].Score);
            }
    }
}
