namespace Reference.Attention;

/// <summary>
/// MoBA with the fast dense attention: equal to the readable reference <see cref="Moba.Compute"/> bit for bit
/// (proofs/attention-sparse.md, theorem attention.moba-fast-reference-identical). Used by <c>check moba</c> beyond the
/// size documented in proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// The reference is dense attention under the mask of the chunks MoBA selects. This path builds the same mask with the
/// reference's own <see cref="Moba.Mask"/> (which also validates, with the same messages) and runs
/// <see cref="DenseAttentionFast.Compute"/> under it with the same options, which equals
/// <see cref="DenseAttention.Compute(double[,,,], double[,,,], double[,,,], AttentionOptions)"/> bit for bit for every input
/// and option, masks included (attention.fast-reference-identical).
/// </remarks>
public static class MobaFast
{
    /// <summary>Computes <see cref="Moba.Compute"/>'s result.</summary>
    /// <param name="q">Queries [B, H, T, D], finite.</param>
    /// <param name="k">Keys [B, H, T, D], finite.</param>
    /// <param name="v">Values [B, H, T, Dv], finite.</param>
    /// <param name="options">Chunk size, top-k, scale.</param>
    /// <returns>out [B, H, T, Dv] and lse [B, H, T].</returns>
    /// <exception cref="ArgumentException">As for <see cref="Moba.Compute"/>.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, MobaOptions options) =>
        DenseAttentionFast.Compute(q, k, v, Moba.DenseOptions(options, Moba.Mask(q, k, v, options)));
}
