using Reference.Harness.Algorithms;

namespace Reference.Torch.Routing;

/// <summary>The torch paths of the routing algorithms (<see cref="TorchPaths"/>).</summary>
public static class RoutingTorchPaths
{
    /// <summary>Adds them to the registered algorithms; running it again does nothing.</summary>
    public static void Register()
    {
        TopKAlgorithm.Descriptor.AddPath(TopKAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32: softmax/sigmoid, bias-selected torch.topk, weights gathered and renormalized", TopKTorch.Run)
            {
                Devices = TorchPaths.Devices,
            }));
    }
}
