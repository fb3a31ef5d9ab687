using System.Globalization;
using System.Text.Json;
using MLNet.ImageTransfer.Reporting;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Tests.Reporting;

/// <summary>The history, prediction and top-loss files: what is written reads back, and parses as plain CSV/JSON.</summary>
public class ReportFilesTests
{
    internal static TrainingHistory SampleHistory(bool validation = true) => new(
    [
        new(1, 4, TrainingPhase.Frozen, 10, TimeSpan.FromSeconds(1.5), 1e-3, 1.25, 0.5, validation ? 1.0 : null, validation ? 0.625 : null, true),
        new(2, 4, TrainingPhase.Frozen, 10, TimeSpan.FromSeconds(1.25), 1e-3, 0.75, 0.75, validation ? 0.5 : null, validation ? 0.8125 : null, true),
        new(3, 4, TrainingPhase.FineTune, 10, TimeSpan.FromSeconds(2), 1e-4, 0.375, 0.875, validation ? 0.625 : null, validation ? 0.75 : null, false),
        new(4, 4, TrainingPhase.FineTune, 10, TimeSpan.FromSeconds(2.5), 1e-4, 0.125, 1.0, validation ? 0.875 : null, validation ? 0.6875 : null, false),
    ], validation ? 2 : 4);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void History_csv_and_json_read_back_exactly(bool validation)
    {
        var history = SampleHistory(validation);
        var dir = TestData.NewTempDir("history");
        var written = TrainingHistoryFiles.SaveNextToModel(history, Path.Combine(dir, "model.zip"));
        Assert.Equal(["model.history.csv", "model.history.json", "model.curves.png"], written.Select(Path.GetFileName));

        foreach (var read in new[] { TrainingHistoryFiles.ReadCsv(written[0]), TrainingHistoryFiles.ReadJson(written[1]) })
        {
            Assert.Equal(history.KeptEpoch, read.KeptEpoch);
            Assert.Equal(history.Epochs, read.Epochs);
        }
    }

    [Fact]
    public void History_csv_uses_keras_column_names_and_plain_values()
    {
        var lines = TrainingHistoryFiles.ToCsv(SampleHistory()).TrimEnd('\n').Split('\n');
        Assert.Equal("epoch,epochs,phase,steps,duration_s,lr,loss,accuracy,val_loss,val_accuracy,improved,kept", lines[0]);
        Assert.Equal(5, lines.Length);
        var row = lines[2].Split(',');
        Assert.Equal(["2", "4", "frozen", "10", "1.25", "0.001", "0.75", "0.75", "0.5", "0.8125", "true", "true"], row);
        Assert.Equal("false", lines[3].Split(',')[^1]);

        var noValidation = TrainingHistoryFiles.ToCsv(SampleHistory(validation: false)).Split('\n')[1].Split(',');
        Assert.Equal("", noValidation[8]);
        Assert.Equal("", noValidation[9]);

        using var json = JsonDocument.Parse(TrainingHistoryFiles.ToJson(SampleHistory()));
        Assert.Equal(2, json.RootElement.GetProperty("kept_epoch").GetInt32());
        var epochs = json.RootElement.GetProperty("epochs");
        Assert.Equal(4, epochs.GetArrayLength());
        Assert.Equal(0.875, epochs[3].GetProperty("val_loss").GetDouble());
        Assert.Equal("fine-tune", epochs[3].GetProperty("phase").GetString());
        Assert.Equal(JsonValueKind.Null, JsonDocument.Parse(TrainingHistoryFiles.ToJson(SampleHistory(false))).RootElement.GetProperty("epochs")[0].GetProperty("val_loss").ValueKind);
    }

    [Fact]
    public void A_malformed_history_file_is_named_in_the_error()
    {
        var path = Path.Combine(TestData.NewTempDir("history-bad"), "h.csv");
        File.WriteAllText(path, TrainingHistoryFiles.ToCsv(SampleHistory()).Replace("0.8125", "zero point eight"));
        var e = Assert.Throws<InvalidDataException>(() => TrainingHistoryFiles.ReadCsv(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Predictions_csv_round_trips_paths_with_commas_and_quotes()
    {
        var predictions = new List<ImagePrediction>
        {
            new("/data/a,b/\"quoted\" cat.png", [("cat", 0.75f), ("dog, big", 0.2f), ("bird", 0.05f)]),
            new("/data/plain.png", [("dog, big", 0.999999f), ("cat", 1e-7f), ("bird", 0f)]),
        };
        var path = ReportCsv.WritePredictions(Path.Combine(TestData.NewTempDir("pred"), "p.csv"), predictions);
        var text = File.ReadAllText(path);
        Assert.StartsWith("path,class1,probability1,class2,probability2,class3,probability3\n", text);
        Assert.Contains("\"/data/a,b/\"\"quoted\"\" cat.png\",cat,0.75,\"dog, big\",0.2,bird,0.05\n", text);

        var read = ReportCsv.ReadPredictions(path);
        Assert.Equal(predictions.Count, read.Count);
        for (int i = 0; i < predictions.Count; i++)
        {
            Assert.Equal(predictions[i].ImagePath, read[i].ImagePath);
            Assert.Equal(predictions[i].Top, read[i].Top);
        }
    }

    [Fact]
    public void Top_losses_csv_lists_rank_and_loss_worst_first()
    {
        var losses = ClassificationMetrics.TopLosses(
            [new("b.png", 0, [0.1f, 0.9f]), new("a.png", 1, [0.6f, 0.4f]), new("c,d.png", 0, [0.99f, 0.01f])], ["x", "y"], 10);
        var rows = File.ReadAllText(ReportCsvPath(losses)).TrimEnd('\n').Split('\n');
        Assert.Equal("rank,path,actual,predicted,p_actual,p_predicted,loss", rows[0]);
        Assert.StartsWith("1,b.png,x,y,", rows[1]);
        Assert.StartsWith("2,a.png,y,x,", rows[2]);
        Assert.StartsWith("3,\"c,d.png\",x,x,", rows[3]);
        Assert.Equal(-Math.Log(0.1f), double.Parse(rows[1].Split(',')[^1], CultureInfo.InvariantCulture), 12);
    }

    static string ReportCsvPath(IReadOnlyList<TopLoss> losses)
    {
        var path = Path.Combine(TestData.NewTempDir("losses"), "top_losses.csv");
        File.WriteAllText(path, ReportCsv.TopLosses(losses));
        return path;
    }
}
