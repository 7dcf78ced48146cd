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
        CapacityAlgorithm.Descriptor.AddPath(CapacityAlgorithm.Entry.ToPath(
            new(TorchPaths.Name,
                "TorchSharp float32, every policy: stable-sort top-k, cumsum positions over one-hot requests (DeepSpeed/GShard) for position, choice-position, "
                + "batch-priority; per-expert top-C over tokens (Megatron drop_policy=probs) for score, logit",
                CapacityTorch.Run)
            {
                Devices = TorchPaths.Devices,
            }));
        ExpertChoiceAlgorithm.Descriptor.AddPath(ExpertChoiceAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32: softmax, torch.topk of C tokens over the token dimension, one-hot counts", ExpertChoiceTorch.Run)
            {
                Devices = TorchPaths.Devices,
            }));
        AuxLossAlgorithm.Descriptor.AddPath(AuxLossAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32, every variant (Megatron, DeepSpeed top1/top2, HF) and z-loss by torch.logsumexp", AuxLossTorch.Run)
            {
                Devices = TorchPaths.Devices,
            }));
        SinkhornAlgorithm.Descriptor.AddPath(SinkhornAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32: methods log (torch.logsumexp updates) and sbase (Megatron, logits <= 88); not knopp, stabilized, eps-scaling, ssr",
                SinkhornTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Supports = SinkhornTorch.Supports,
            }));

        SoftTopKAlgorithm.Descriptor.AddPath(SoftTopKAlgorithm.Entry.ToPath(
            new(TorchPaths.Name,
                "TorchSharp float32, both methods: batched bisection + Newton threshold (entropic by its closed form on min-max "
                + "normalized rows), closed-form Jacobian; tau must be a normal float32",
                SoftTopKTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Supports = SoftTopKTorch.Supports,
            }));
    }
}
