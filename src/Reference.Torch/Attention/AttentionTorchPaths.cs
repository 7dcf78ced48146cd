using Reference.Harness.Algorithms;

namespace Reference.Torch.Attention;

/// <summary>The torch paths of the attention algorithms (<see cref="TorchPaths"/>).</summary>
public static class AttentionTorchPaths
{
    /// <summary>Adds them to the registered algorithms; running it again does nothing.</summary>
    public static void Register()
    {
        AttentionAlgorithm.Descriptor.AddPath(AttentionAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp SDPA: causal, window and mask as one boolean attn_mask, GQA by repeat_interleave, lse by logsumexp; softcap or a scale SDPA cannot take exactly: eager masked softmax; f16/bf16 inputs in their dtype", DenseAttentionTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        BlockSparseAlgorithm.Descriptor.AddPath(BlockSparseAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp: the BlockMask expanded to a boolean [Tq, Tk] attn_mask, then SDPA as attention's torch path", BlockSparseTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        MobaAlgorithm.Descriptor.AddPath(MobaAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp: float64 mean-key gate and ranking-rule selection for all queries at once, then SDPA under the selection's boolean mask", MobaTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
        LinearAlgorithm.Descriptor.AddPath(LinearAlgorithm.Entry.ToPath(
            new(TorchPaths.Name, "TorchSharp float32 chunked form: masked decayed quadratic form inside a chunk, state carried by a loop over chunks", LinearTorch.Run)
            {
                Devices = TorchPaths.Devices,
                Unavailable = TorchDevice.Unavailable,
            }));
    }
}
