using Reference.Harness.Algorithms;

namespace Reference.Torch.Routing;

/// <summary>The torch paths of the routing algorithms (<see cref="TorchPaths"/>).</summary>
public static class RoutingTorchPaths
{
    /// <summary>Adds them to the registered algorithms; running it again does nothing.</summary>
    public static void Register()
    {
        TopKAlgorithm.Descriptor.AddPath(TopKAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32 router: softmax/sigmoid, bias-selected torch.topk, weights gathered and renormalized; f16/bf16 logits: weights .to(dtype)", TopKTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        CapacityAlgorithm.Descriptor.AddPath(CapacityAlgorithm.Entry.ToPath(
            new(TorchPaths.Name,
                "TorchSharp float32 router, every policy: stable-sort top-k, int64 cumsum positions over one-hot requests (DeepSpeed/GShard) for position, choice-position, "
                + "batch-priority; per-expert top-C over tokens (Megatron drop_policy=probs) for score, logit; f16/bf16 logits: weights .to(dtype)",
                CapacityTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        ExpertChoiceAlgorithm.Descriptor.AddPath(ExpertChoiceAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32 router: softmax, torch.topk of C tokens over the token dimension, one-hot counts; f16/bf16 logits: gates .to(dtype)", ExpertChoiceTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        AuxLossAlgorithm.Descriptor.AddPath(AuxLossAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32 for every input dtype (Megatron), every variant (Megatron, DeepSpeed top1/top2, HF) and z-loss by torch.logsumexp", AuxLossTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        SinkhornAlgorithm.Descriptor.AddPath(SinkhornAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32 for every input dtype: methods log (torch.logsumexp updates) and sbase (Megatron, logits <= 88; f16/bf16 gates .to(dtype)); not knopp, stabilized, eps-scaling, ssr",
                SinkhornTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
                Supports = SinkhornTorch.Supports,
            }));

        SoftTopKAlgorithm.Descriptor.AddPath(SoftTopKAlgorithm.Entry.ToPath(
            new(TorchPaths.Name,
                "TorchSharp float32, both methods: batched bisection + Newton threshold (entropic by its closed form on min-max "
                + "normalized rows), closed-form Jacobian; tau must be a normal float32; f16/bf16 x: y and Jacobian .to(dtype)",
                SoftTopKTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
                Supports = SoftTopKTorch.Supports,
            }));
    }
}
