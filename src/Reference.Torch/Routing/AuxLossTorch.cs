using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// The Switch load-balancing loss and the router z-loss (proofs/aux-loss.md, Definition) as GPU users write them, in
/// float32: P = softmax(X), the top-k selection's one-hot counts per expert, the mean score per expert, and one dot
/// product; z = mean_i logsumexp_e(X_ie)^2.
/// </summary>
/// <remarks>
/// <para>Every variant the entry has, each in its codebase's formulation: <c>megatron</c> follows Megatron-LM's
/// <c>switch_load_balancing_loss_func</c> (tokens per expert from all k choices, E·(c·Pbar)/(N·k)); <c>hf</c> HF
/// Transformers' <c>load_balancing_loss_func</c> without attention mask (the same dot product over N); <c>deepspeed-top1</c>
/// and <c>deepspeed-top2</c> DeepSpeed's <c>top1gating</c>/<c>top2gating</c> (me = mean of P, ce = mean of the first-choice
/// one-hot mask, sum(me·ce)·E and mean(me·ce)·E·E). z-loss: Switch Transformer / ST-MoE's router z-loss with
/// <c>torch.logsumexp</c>, as Megatron-LM's <c>z_loss_func</c>. An empty batch gives 0 for both, as the reference.</para>
/// <para>Precision: float32 for every input dtype, as Megatron-LM computes the aux loss (probabilities from
/// <c>softmax(logits, dtype=torch.float32)</c>, the loss reduced in float32) and DeepSpeed its float32 gate; a float16 or
/// bfloat16 input is widened exactly, and both losses are returned as float32 scalars.</para>
/// <para>Ties in the selection: <c>torch.topk</c> may count either of two equal scores; the aux-loss validator's tolerance
/// covers near-ties at the top-k boundary (proofs/aux-loss.md).</para>
/// </remarks>
public static class AuxLossTorch
{
    /// <summary>Computes both losses of the call's logits [N, E] on its device, in float32.</summary>
    /// <param name="call">The bound call (logits).</param>
    /// <param name="options">k and the variant.</param>
    /// <returns>switch_loss and z_loss, scalars.</returns>
    public static AuxLossOutput Run(AlgorithmCall call, AuxLossOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var shape = call.Array("logits").Shape;
        int n = shape[0], e = shape[1], k = options.K;
        if (n == 0)
        {
            return new AuxLossOutput(NdArray.Scalar(0.0f), NdArray.Scalar(0.0f));
        }
        var logits = tensor(call.Floats("logits"), [n, e], ScalarType.Float32, device);
        var probs = logits.softmax(-1);                                  // [N, E]
        var selection = probs.topk(k, dim: -1).indexes;                  // [N, k]
        var meanScore = probs.mean([0]);                                 // [E]
        Tensor loss;
        switch (options.Variant)
        {
            case AuxLossVariant.Megatron:
            case AuxLossVariant.Hf:
                // tokens_per_expert from every choice; the sum of P over tokens, then one division.
                var tokensPerExpert = nn.functional.one_hot(selection, e).sum([0, 1]).to(ScalarType.Float32); // [E]
                var dot = (probs.sum([0]) * tokensPerExpert).sum();
                loss = dot * (float)e / (options.Variant == AuxLossVariant.Megatron ? (float)n * n * k : (float)n * n);
                break;
            case AuxLossVariant.DeepSpeedTop1:
            case AuxLossVariant.DeepSpeedTop2:
                var mask1 = nn.functional.one_hot(selection.select(1, 0), e).to(ScalarType.Float32); // [N, E]
                var ce = mask1.mean([0]);                                                            // [E]
                loss = options.Variant == AuxLossVariant.DeepSpeedTop1
                    ? (meanScore * ce).sum() * (float)e
                    : (meanScore * ce).mean() * (float)e * (float)e;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Variant, "unknown aux-loss variant");
        }
        var z = logits.logsumexp(-1).square().mean();
        return new AuxLossOutput(NdArray.Scalar(loss.cpu().item<float>()), NdArray.Scalar(z.cpu().item<float>()));
    }
}
