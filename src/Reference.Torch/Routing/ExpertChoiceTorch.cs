using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// Expert-choice routing (proofs/expert-choice.md, Definition) as GPU users write it (Zhou et al. 2022; flaxformer's
/// experts-choose router): P = softmax(X) over the experts, then every expert takes its top-C tokens with one
/// <c>torch.topk</c> over the token dimension, in float32 (gates in the logits' dtype).
/// </summary>
/// <remarks>C is resolved on the host from N, E, k and the factor (<see cref="ExpertChoice.ResolveCapacity"/>).
/// <c>torch.topk</c> does not promise which of two equal scores comes first; the expert-choice validator accepts every
/// choice among near-ties (proofs/expert-choice.md). count is the histogram of the chosen tokens (<c>torch.bincount</c>; the one-hot sum of the papers' code needs E C N memory). Precision
/// (<see cref="TorchRouting"/>): logits in the model's dtype, softmax and selection in float32 (flaxformer's float32
/// router), gates returned with <c>.to(dtype)</c>: float16 or bfloat16 for float16 or bfloat16 logits, else float32.</remarks>
public static class ExpertChoiceTorch
{
    /// <summary>Routes the call's logits [N, E] on its device: float32 router math, gates in the logits' dtype.</summary>
    /// <param name="call">The bound call (logits).</param>
    /// <param name="options">The capacity, explicit or from the factor and k.</param>
    /// <returns>tokens and gates [E, C], count [N].</returns>
    public static ExpertChoiceOutput Run(AlgorithmCall call, ExpertChoiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var shape = call.Array("logits").Shape;
        int n = shape[0], e = shape[1];
        int c = ExpertChoice.ResolveCapacity(n, e, options);
        if (c == 0)
        {
            return new ExpertChoiceOutput(NdArray.Create(Array.Empty<int>(), e, 0), TorchRouting.Stored(zeros(e, 0), TorchRouting.ModelType(call, "logits"), e, 0), NdArray.Create(new int[n], n));
        }
        var logits = tensor(call.Floats("logits"), [n, e], ScalarType.Float32, device);
        var scores = logits.softmax(-1);                                          // [N, E]
        var (gates, tokens) = scores.topk(c, dim: 0, largest: true, sorted: true); // [C, E] each
        var count = tokens.reshape(-1).bincount(null, minlength: n);             // [N]; a one-hot sum would take [E C, N]
        return new ExpertChoiceOutput(
            NdArray.Create(tokens.t().contiguous().to(ScalarType.Int32).cpu().data<int>().ToArray(), e, c),
            TorchRouting.Stored(gates.t(), TorchRouting.ModelType(call, "logits"), e, c),
            NdArray.Create(count.to(ScalarType.Int32).cpu().data<int>().ToArray(), n));
    }
}
