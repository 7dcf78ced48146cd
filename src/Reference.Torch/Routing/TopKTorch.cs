using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// Token-choice top-k routing (proofs/topk.md, Definition) as GPU users write it: scores for the whole batch, selection
/// keys P + b, <c>torch.topk</c> over experts, weights gathered from P and renormalized over the k.
/// </summary>
/// <remarks><para><c>torch.topk</c> does not promise which of two equal keys comes first; the topk validator accepts either
/// (proofs/topk.md, Ties).</para>
/// <para>Precision (<see cref="TorchRouting"/>): logits in the model's dtype, scores, keys, selection and renormalization
/// in float32 (Hugging Face Mixtral's <c>softmax(router_logits, dim=1, dtype=torch.float)</c>, DeepSeek-V3's float32
/// sigmoid), weights returned with <c>.to(dtype)</c>: float16 or bfloat16 weights for float16 or bfloat16 logits, else
/// float32.</para></remarks>
public static class TopKTorch
{
    /// <summary>Routes the call's logits [N, E] on its device: float32 router math, weights in the logits' dtype.</summary>
    /// <param name="call">The bound call (logits, optional bias).</param>
    /// <param name="options">k, score function, normalization, bias.</param>
    /// <returns>experts [N, k] and weights [N, k].</returns>
    public static TopKOutput Run(AlgorithmCall call, TopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var shape = call.Array("logits").Shape;
        int n = shape[0], e = shape[1];
        var logits = tensor(call.Floats("logits"), [n, e], ScalarType.Float32, device);
        var scores = options.Score == ScoreFunction.Softmax ? logits.softmax(-1) : logits.sigmoid();
        var keys = options.Bias is { } bias
            ? scores + tensor(bias.Select(b => (float)b).ToArray(), [1, e], ScalarType.Float32, device)
            : scores;
        var (_, experts) = keys.topk(options.K, dim: -1, largest: true, sorted: true);
        var weights = scores.gather(-1, experts);
        if (options.Normalize)
        {
            weights = weights / weights.sum(-1, keepdim: true);
        }
        return new TopKOutput(
            NdArray.Create(experts.to(ScalarType.Int32).cpu().data<int>().ToArray(), n, options.K),
            TorchRouting.Stored(weights, TorchRouting.ModelType(call, "logits"), n, options.K));
    }
}
