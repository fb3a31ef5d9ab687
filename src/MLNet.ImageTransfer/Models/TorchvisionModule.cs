using MLNet.ImageTransfer.Engine;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// Base of our modules: children are registered explicitly under torchvision's names (<c>norm1</c>, <c>downsample</c>…).
/// TorchSharp would otherwise also register every private field under its C# name (<c>_norm1</c>) when the module is
/// attached to a parent, duplicating parameters in <c>state_dict</c> under names no checkpoint has.
/// Building the first one checks, once per process, that libtorch's convolutions are correct on this machine
/// (<see cref="ConvolutionEngineCheck"/>): every network of the library is made of these modules.
/// </summary>
public abstract class TorchvisionModule : nn.Module<Tensor, Tensor>
{
    protected TorchvisionModule(string name) : base(name) => ConvolutionEngineCheck.EnsureChecked();

    protected sealed override void RegisterComponents() { }
}
