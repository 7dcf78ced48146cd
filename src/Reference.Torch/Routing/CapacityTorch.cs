using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// Top-k routing with expert capacity and dropping (proofs/capacity.md, Definition) as GPU users write it: top-k over
/// the whole batch, then a dispatch mask built without loops over tokens, in float32, for every drop policy.
/// </summary>
/// <remarks>
/// <para>Token-order policies follow DeepSpeed's <c>top2gating</c>/<c>topkgating</c> and GShard: the requests are laid
/// out in priority order as one-hot rows [R, E] (R = N·k), and the cumulative sum over the requests gives each one its
/// position in its expert's buffer (DeepSpeed's <c>locations = cumsum(mask) - 1</c>); a request is kept when its position
/// is below C, and that position is its slot. The layouts: (i, j) for <c>position</c>; (j, i) for
/// <c>choice-position</c> (all first choices before the second ones, as top2gating offsets <c>locations2</c> by the
/// first choices' counts); (j, token rank) for <c>batch-priority</c>, the tokens sorted by their first-choice score
/// with a stable descending sort (V-MoE's batch prioritized routing).</para>
/// <para>Value policies follow Megatron-LM's <c>topk_softmax_with_capacity</c> with <c>drop_policy="probs"</c>: the
/// requests' values are scattered into a dense [N, E] matrix (-inf where token i did not ask for expert e), every expert
/// takes its top-C tokens over the token dimension, and the kept mask is that choice and-ed with
/// the requests. The value is the pre-drop weight for <c>score</c> (after "before" renormalization, as the Definition
/// says) and the raw logit for <c>logit</c>. Slots then number each expert's kept requests in token order
/// (cumsum over tokens of the kept mask).</para>
/// <para>Weights: P at the selected experts; "before" is a softmax over the k selected logits (sigmoid: over their
/// log-sigmoids), "after" the same over the kept ones only (-inf at dropped positions; a row with nothing kept gets
/// zeros), both in log space as the reference computes them. C is resolved on the host from N, E, k and the capacity
/// rule (<see cref="ExpertCapacity.Resolve"/>), as Megatron and DeepSpeed compute it from the shapes.</para>
/// <para>Ties: where Megatron and DeepSpeed call <c>torch.topk</c> (which does not promise an order among equal values), this
/// path sorts with <c>torch.sort(stable=True)</c> and takes the first k (or C): exactly equal keys then go to the lower
/// expert, and exactly equal values to the lower token, as the Definition orders them. Near-ties that float32 rounding
/// breaks differently from the double reference are left to the validator, which accepts either order within the
/// rounding slack.</para>
/// <para>Precision (<see cref="TorchRouting"/>): logits in the model's dtype, scores, keys and weights in float32 (DeepSpeed's
/// float32 gate, Megatron's <c>softmax(dtype=torch.float32)</c>), positions by an int64 cumsum of the one-hot requests,
/// weights returned with <c>.to(dtype)</c>: float16 or bfloat16 weights for float16 or bfloat16 logits, else float32.</para>
/// </remarks>
public static class CapacityTorch
{
    /// <summary>Routes the call's logits [N, E] on its device.</summary>
    /// <param name="call">The bound call (logits, optional bias).</param>
    /// <param name="options">k, score, normalization, capacity rule, drop policy and bias.</param>
    /// <returns>experts, weights and slots [N, k], load [E].</returns>
    public static CapacityOutput Run(AlgorithmCall call, CapacityOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var shape = call.Array("logits").Shape;
        int n = shape[0], e = shape[1], k = options.K;
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);
        var logits = tensor(call.Floats("logits"), [n, e], ScalarType.Float32, device);

        // 1. Selection: top-k of P + b; sel [N, k] best first.
        var scores = options.Score == ScoreFunction.Softmax ? logits.softmax(-1) : logits.sigmoid();
        var keys = options.Bias is { } bias
            ? scores + tensor(bias.Select(b => (float)b).ToArray(), [1, e], ScalarType.Float32, device)
            : scores;
        // A stable descending sort, not torch.topk: exact ties go to the lower expert, as the Definition ranks them.
        var sel = keys.sort(dim: -1, descending: true, stable: true).Indices.narrow(1, 0, k); // [N, k] int64
        var selectedLogits = logits.gather(-1, sel);                         // [N, k]

        // 2. Pre-drop weights w [N, k]: P at the selection, or renormalized over the k in log space ("before").
        var logScore = options.Score == ScoreFunction.Softmax ? selectedLogits : nn.functional.logsigmoid(selectedLogits);
        var w = options.Normalize == Renormalization.Before ? logScore.softmax(-1) : scores.gather(-1, sel);

        // 3. Kept mask and slots [N, k].
        var (kept, slots) = options.Policy switch
        {
            DropPolicy.Score => ByValue(sel, w, n, e, c),
            DropPolicy.Logit => ByValue(sel, selectedLogits, n, e, c),
            _ => ByPosition(sel, options.Policy, scores.gather(-1, sel.narrow(1, 0, 1)).squeeze(1), n, e, k, c),
        };

        // 4. Outputs: -1 and 0 where dropped; "after" renormalizes over the kept in log space.
        var experts = sel.where(kept, -1);
        var weights = options.Normalize == Renormalization.After
            ? logScore.masked_fill(kept.logical_not(), double.NegativeInfinity).softmax(-1)
            : w;
        weights = weights.where(kept, 0.0f); // also clears the NaN of a row with nothing kept
        var load = nn.functional.one_hot(sel, e).mul(kept.unsqueeze(-1)).sum([0, 1]);
        return new CapacityOutput(
            NdArray.Create(experts.to(ScalarType.Int32).cpu().data<int>().ToArray(), n, k),
            TorchRouting.Stored(weights, TorchRouting.ModelType(call, "logits"), n, k),
            NdArray.Create(slots.where(kept, -1).to(ScalarType.Int32).cpu().data<int>().ToArray(), n, k),
            NdArray.Create(load.to(ScalarType.Int32).cpu().data<int>().ToArray(), e));
    }

    /// <summary>Token-order policies (DeepSpeed, GShard): one-hot requests in priority order, cumsum over them gives the
    /// position in the expert's buffer; kept below C. top1 [N] is each token's raw first-choice score P[i, e_i1], the
    /// batch-priority key. Returns kept and slots [N, k] in the (i, j) layout.</summary>
    private static (Tensor Kept, Tensor Slots) ByPosition(Tensor sel, DropPolicy policy, Tensor top1, int n, int e, int k, int c)
    {
        // The requests as [k, N] in choice-major order, or [N, k] in token-major order (position).
        Tensor position;
        if (policy == DropPolicy.Position)
        {
            var mask = nn.functional.one_hot(sel, e).reshape(n * k, e);          // [N·k, E], (i, j) order
            var locations = mask.cumsum(dim: 0).sub(1).mul(mask).sum(dim: -1);             // [N·k]
            position = locations.reshape(n, k);
        }
        else
        {
            // Choice-major: (j, i); batch-priority first sorts the tokens by first-choice score (stable, descending).
            var order = policy == DropPolicy.BatchPriority
                ? top1.sort(dim: 0, descending: true, stable: true).Indices // [N]: tokens by priority
                : arange(n, ScalarType.Int64, sel.device);
            var ordered = sel.index_select(0, order).t();                        // [k, N]
            var mask = nn.functional.one_hot(ordered, e).reshape(k * n, e);      // [k·N, E]
            var locations = mask.cumsum(dim: 0).sub(1).mul(mask).sum(dim: -1).reshape(k, n).t(); // [N, k] in sorted token order
            position = zeros_like(locations).index_copy(0, order, locations);   // back to token index order
        }
        return (position.lt(c), position);
    }

    /// <summary>Value policies (Megatron-LM drop_policy="probs"): every expert keeps its top-C tokens by the request's
    /// value; slots in token order. Returns kept and slots [N, k].</summary>
    private static (Tensor Kept, Tensor Slots) ByValue(Tensor sel, Tensor value, int n, int e, int c)
    {
        var requested = zeros(n, e, ScalarType.Bool, sel.device).scatter(1, sel, ones_like(sel, ScalarType.Bool)); // [N, E]
        var dense = full(n, e, float.NegativeInfinity, ScalarType.Float32, sel.device).scatter(1, sel, value);    // [N, E]
        var keep = zeros(n, e, ScalarType.Bool, sel.device);
        int take = Math.Min(c, n);
        if (take > 0)
        {
            // Megatron takes torch.topk over the tokens; a stable sort keeps exact ties in token order, as the Definition does.
            var top = dense.sort(dim: 0, descending: true, stable: true).Indices.narrow(0, 0, take); // [C', E]
            keep = keep.scatter(0, top, ones_like(top, ScalarType.Bool));
        }
        keep = keep.logical_and(requested);                                                       // [N, E]
        var slotOf = keep.to(ScalarType.Int64).cumsum(dim: 0).sub(1);                                  // [N, E]
        return (keep.gather(1, sel), slotOf.gather(1, sel));
    }
}
