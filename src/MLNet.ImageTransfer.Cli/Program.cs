using System.CommandLine;
using MLNet.ImageTransfer.Cli.Commands;

var root = new RootCommand("MLNet.ImageTransfer: DenseNet, ResNet and VGG transfer learning in ML.NET pipelines.")
{
    DemoCommand.Create(),
    TrainCommand.Create(),
    EvaluateCommand.Create(),
    PredictCommand.Create(),
    AugmentCommand.Create(),
    ExplainCommand.Create(),
    ExportCommand.Create(),
    WeightsCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
