namespace Reference.Attention;

/// <summary>
/// NSA with the fast dense attention in its three branches: equal to the readable reference <see cref="Nsa.Compute"/>
/// (and <see cref="Nsa.ComputeWithSelection"/>) bit for bit (proofs/attention-sparse.md, theorem
/// attention.nsa-fast-reference-identical). Used by <c>check nsa</c> beyond the size documented in proofs/cli.md ("Fast
/// references beyond a size").
/// </summary>
/// <remarks>
/// Validation, selection scores, the top-n selection, pooling and the gated sum are the reference's own code; the only
/// difference is that each branch's dense attention is <see cref="DenseAttentionFast.Compute"/>, equal to
/// <see cref="DenseAttention.Compute(double[,,,], double[,,,], double[,,,], AttentionOptions)"/> bit for bit for every
/// input and option, masks included (attention.fast-reference-identical).
/// </remarks>
public static class NsaFast
{
    /// <summary>Computes <see cref="Nsa.Compute"/>'s result.</summary>
    /// <param name="q">Queries [B, Hq, T, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, T, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values [B, Hkv, T, Dv], finite.</param>
    /// <param name="gates">Gates [B, Hq, T, 3] = (g_cmp, g_slc, g_win), finite.</param>
    /// <param name="options">Block size, top-n, window, scale.</param>
    /// <returns>The gated output, the selection and the three branches.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Nsa.Compute"/>.</exception>
    public static NsaResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options) =>
        Nsa.Run(q, k, v, gates, options, DenseAttentionFast.Compute);

    /// <summary>Computes <see cref="Nsa.ComputeWithSelection"/>'s result.</summary>
    /// <param name="q">Queries [B, Hq, T, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, T, D], finite.</param>
    /// <param name="v">Values [B, Hkv, T, Dv], finite.</param>
    /// <param name="gates">Gates [B, Hq, T, 3], finite.</param>
    /// <param name="options">Block size, window, scale (top-n is not used).</param>
    /// <param name="selected">The selection [B, Hkv, T, ceil(T / BS)].</param>
    /// <returns>The result, with <paramref name="selected"/> as its selection.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Nsa.ComputeWithSelection"/>.</exception>
    public static NsaResult ComputeWithSelection(
        double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options, bool[,,,] selected) =>
        Nsa.RunWithSelection(q, k, v, gates, options, selected, DenseAttentionFast.Compute);
}
