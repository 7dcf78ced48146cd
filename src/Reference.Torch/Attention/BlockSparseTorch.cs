using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using static TorchSharp.torch;

namespace Reference.Torch.Attention;

/// <summary>
/// Block-sparse attention with FlexAttention BlockMask semantics
/// (proofs/attention.md, Definition: Block-sparse attention (BlockMask)) as PyTorch users run it without FlexAttention:
/// the BlockMask expanded to a boolean [Bm, Hm, Tq, Tk] mask (a key allowed when its tile is listed full, or listed
/// partial and the element mask allows it), then dense attention under it (<see cref="TorchAttention.Attend"/>: SDPA, lse by logsumexp, empty rows 0 and -Inf). Block-sparse
/// attention equals dense attention under that mask (attention.block-sparse-equivalence).
/// </summary>
/// <remarks>The tile lists are validated by <see cref="BlockSparseAlgorithm.Mask"/> (indices in range, ascending, no
/// tile both partial and full), so that a bad list is refused with the same message as by the other paths; the
/// expansion itself is tensor code: entry n of a row counts when n &lt; its count, and a tile is listed when one
/// counted entry equals it.</remarks>
public static class BlockSparseTorch
{
    /// <summary>Block-sparse attention of the call's q, k, v on its device.</summary>
    /// <param name="call">The bound call (q, k, v, tile lists, optional element mask).</param>
    /// <param name="options">Tile sizes, scale, softcap.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    public static AttentionOutput Run(AlgorithmCall call, BlockSparseOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        TorchAttention.Validate(call, options.Scale, options.Softcap);
        _ = BlockSparseAlgorithm.Mask(call);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var q = TorchAttention.Floats(call, "q", device);
        var k = TorchAttention.Floats(call, "k", device);
        var v = TorchAttention.Floats(call, "v", device);
        long tq = q.shape[2], tk = k.shape[2];

        var partial = Listed(TorchAttention.Integers(call, "kv_num_blocks", device), TorchAttention.Integers(call, "kv_indices", device));
        var allowed = Expand(partial, options, tq, tk, device);
        var mask = TorchAttention.OptionalBools(call, "mask", device);
        if (mask is not null) allowed = allowed.logical_and(mask);
        if (call.Has("full_kv_num_blocks"))
        {
            var full = Listed(TorchAttention.Integers(call, "full_kv_num_blocks", device), TorchAttention.Integers(call, "full_kv_indices", device));
            allowed = allowed.logical_or(Expand(full, options, tq, tk, device));
        }
        return TorchAttention.Attend(q, k, v, allowed, options.Scale, options.Softcap, TorchAttention.ComputeType(call));
    }

    /// <summary>Which key tiles a row lists: listed[.., c] = any over n &lt; counts of indices[.., n] == c.</summary>
    /// <param name="counts">[Bm, Hm, nq].</param>
    /// <param name="indices">[Bm, Hm, nq, nk].</param>
    /// <returns>bool [Bm, Hm, nq, nk].</returns>
    private static Tensor Listed(Tensor counts, Tensor indices)
    {
        long nk = indices.shape[3];
        var n = arange(nk, ScalarType.Int64, indices.device);
        var counted = n.view(1, 1, 1, nk) < counts.unsqueeze(-1);                          // [Bm, Hm, nq, nk(entries)]
        var hit = indices.unsqueeze(-1) == n.view(1, 1, 1, 1, nk);                          // [Bm, Hm, nq, entries, tiles]
        return hit.logical_and(counted.unsqueeze(-1)).any(-2, keepdim: false);
    }

    /// <summary>A tile-level mask [Bm, Hm, nq, nk] expanded to elements [Bm, Hm, Tq, Tk].</summary>
    private static Tensor Expand(Tensor tiles, BlockSparseOptions options, long tq, long tk, Device device)
    {
        var rowTile = arange(tq, ScalarType.Int64, device).div(options.BlockQ, rounding_mode: RoundingMode.floor);
        var colTile = arange(tk, ScalarType.Int64, device).div(options.BlockK, rounding_mode: RoundingMode.floor);
        return tiles.index_select(2, rowTile).index_select(3, colTile);
    }
}
