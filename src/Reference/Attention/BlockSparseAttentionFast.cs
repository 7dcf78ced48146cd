namespace Reference.Attention;

/// <summary>
/// Block-sparse attention through the fast dense attention: equal to the readable reference
/// <see cref="BlockSparseAttention.Compute"/> bit for bit (proofs/attention.md, theorem
/// attention.block-sparse-fast-reference-identical). Used by <c>check block-sparse</c> beyond the size documented in
/// proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// The reference equals dense attention under the expanded mask <see cref="BlockMask.ToDenseMask"/> with the same scale
/// and softcap, bit for bit (attention.block-sparse-equivalence), and <see cref="DenseAttentionFast.Compute"/> equals that
/// dense attention bit for bit (attention.fast-reference-identical). This path validates as the reference does
/// (<see cref="BlockSparseAttention.Validate"/>), then computes the second.
/// </remarks>
public static class BlockSparseAttentionFast
{
    /// <summary>Computes <see cref="BlockSparseAttention.Compute"/>'s result.</summary>
    /// <param name="q">Queries [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, Tk, D], finite.</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="blockMask">The tiles to visit.</param>
    /// <param name="elementMask">Consulted inside partial tiles only, or null.</param>
    /// <param name="scale">The score scale; null means 1/sqrt(D).</param>
    /// <param name="softcap">c &gt; 0 maps a score s to c tanh(s/c); 0 none.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    /// <exception cref="ArgumentException">As for <see cref="BlockSparseAttention.Compute"/>.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, BlockMask blockMask,
                                          bool[,,,]? elementMask, double? scale, double softcap)
    {
        BlockSparseAttention.Validate(q, k, v, blockMask, elementMask, scale, softcap);
        return DenseAttentionFast.Compute(q, k, v,
            new AttentionOptions { Scale = scale, Softcap = softcap, Mask = blockMask.ToDenseMask(elementMask) });
    }
}
