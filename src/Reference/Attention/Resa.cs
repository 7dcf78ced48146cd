using Reference.Routing;

namespace Reference.Attention;

/// <summary>Options of a ReSA decode step (<see cref="Resa"/>, CLI algorithm <c>resa</c>).</summary>
public sealed record ResaOptions
{
    /// <summary>The block size b of the key cache, &gt;= 1. Default 16.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>The sparsity p in (0, 1]: at least ceil(nb p) blocks are selected. Default 0.1.</summary>
    public double Sparsity { get; init; } = 0.1;

    /// <summary>The last n_local blocks are always selected, &gt;= 0. Default 1.</summary>
    public int NLocal { get; init; } = 1;

    /// <summary>At least min(nb, n_min) blocks are selected, &gt;= 0. Default 16.</summary>
    public int NMin { get; init; } = 16;

    /// <summary>The attention's score scale; null (the default) means 1/sqrt(D). The block scores always use D^-1/2.</summary>
    public double? Scale { get; init; }
}

/// <summary>The outputs of one ReSA decode step.</summary>
public sealed record ResaStepResult
{
    /// <summary>Creates a result (arrays stored, not copied).</summary>
    /// <param name="out">out [B, Hq, 1, Dv].</param>
    /// <param name="lse">lse [B, Hq, 1].</param>
    /// <param name="selected">selected [B, Hkv, nb].</param>
    public ResaStepResult(double[,,,] @out, double[,,] lse, bool[,,] selected)
    {
        Out = @out;
        Lse = lse;
        Selected = selected;
    }

    /// <summary>Attention of the query over the selected blocks' positions, [B, Hq, 1, Dv].</summary>
    public double[,,,] Out { get; }

    /// <summary>The log-sum-exp of the attended scores, [B, Hq, 1].</summary>
    public double[,,] Lse { get; }

    /// <summary>selected[b, g, c]: kv head g attends block c (shared by its query heads), [B, Hkv, ceil(L / b)].</summary>
    public bool[,,] Selected { get; }
}

/// <summary>
/// One decode step of Rectified Sparse Attention (ReSA): block selection by a min/max key summary and a pooled
/// query, then attention over the selected blocks (CLI algorithm <c>resa</c>, proofs/attention-sparse.md, Definition: ReSA).
/// The multi-layer decode loop with periodic dense rectification is <see cref="ResaModel"/>.
/// </summary>
/// <remarks>
/// <para>Shapes: q [B, Hq, 1, D] (the token at position L - 1, whose k and v are already appended), k [B, Hkv, L, D],
/// v [B, Hkv, L, Dv] (the cache). Query heads h of kv group g = h / (Hq / Hkv) share the selection.</para>
/// <para>Math, per (b, g), with nb = ceil(L / b) blocks and block c holding positions c b .. min(L, (c+1) b) - 1:</para>
/// <code>
/// kmax[c,d] = max_j k[j,d],  kmin[c,d] = min_j k[j,d]          over the block's valid positions
/// qbar_d    = D^-1/2 * mean_{h in g} q[h,d]
/// score_c   = sum_d max(qbar_d kmax[c,d], qbar_d kmin[c,d])     (= max over the block's box of qbar . x, an upper bound of qbar . k_j)
/// n_sel     = max(ceil(nb p), min(nb, n_min))                   nb p evaluated in double, as in Python
/// selected  = the last min(n_local, nb) blocks, then the top (min(nb, n_sel) - that many) other blocks by score
///             (larger first, ties to the lower block index)
/// out, lse  = attention of each q[h] over the positions of the selected blocks (all &lt; L)
/// </code>
/// <para>Decision: the local blocks count toward n_sel (when n_local exceeds n_sel, exactly the local blocks are
/// attended). The attention is <see cref="DenseAttention"/> under the selection's mask, so with p = 1 (every block
/// selected) the step is dense attention bit for bit.</para>
/// <para>Source: Sun et al. 2025, "Rectified Sparse Attention" (Microsoft, arXiv 2506.04108), block selection as in
/// its decoding kernel (Quest-style min/max summaries, Tang et al. 2024).</para>
/// </remarks>
public static class Resa
{
    /// <summary>One decode step in double precision.</summary>
    /// <param name="q">The new token's queries [B, Hq, 1, D], finite.</param>
    /// <param name="k">The key cache [B, Hkv, L, D] with the new token's key last, finite, L &gt;= 1.</param>
    /// <param name="v">The value cache [B, Hkv, L, Dv], finite.</param>
    /// <param name="options">Block size, sparsity, n_local, n_min, scale.</param>
    /// <returns>out, lse and the selected blocks.</returns>
    /// <exception cref="ArgumentException">A shape does not match (q must hold one position), an entry is not finite,
    /// or an option is out of range.</exception>
    public static ResaStepResult DecodeStep(double[,,,] q, double[,,,] k, double[,,,] v, ResaOptions options) =>
        DecodeStepWithSelection(q, k, v, options, SelectBlocks(q, k, v, options));

    /// <summary>
    /// One decode step with a given selection instead of the local + top rule: attention of each query head over the
    /// positions of the blocks its kv group has selected. <see cref="DecodeStep"/> is this with
    /// <see cref="SelectBlocks"/>; the checker uses it to judge an output computed with a different but valid
    /// tie-break (proofs/tolerance.md, Definition: Decisions and near-ties).
    /// </summary>
    /// <param name="q">The new token's queries [B, Hq, 1, D], finite.</param>
    /// <param name="k">The key cache [B, Hkv, L, D], finite.</param>
    /// <param name="v">The value cache [B, Hkv, L, Dv], finite.</param>
    /// <param name="options">Block size and scale (the selection options are not used).</param>
    /// <param name="selected">The selection [B, Hkv, ceil(L / b)].</param>
    /// <returns>out, lse and <paramref name="selected"/> (copied).</returns>
    /// <exception cref="ArgumentException">As for <see cref="DecodeStep"/>, or <paramref name="selected"/> has the wrong shape.</exception>
    public static ResaStepResult DecodeStepWithSelection(double[,,,] q, double[,,,] k, double[,,,] v, ResaOptions options, bool[,,] selected)
    {
        // 1. Validate (the block scores check every input and option).
        ArgumentNullException.ThrowIfNull(selected);
        BlockScores(q, k, v, options);
        int bsz = q.GetLength(0), hq = q.GetLength(1), hkv = k.GetLength(1), l = k.GetLength(2), group = hq / hkv;
        int nb = (l + options.BlockSize - 1) / options.BlockSize;
        if (selected.GetLength(0) != bsz || selected.GetLength(1) != hkv || selected.GetLength(2) != nb)
        {
            throw new ArgumentException(
                $"selected has shape [{selected.GetLength(0)}, {selected.GetLength(1)}, {selected.GetLength(2)}], expected [{bsz}, {hkv}, {nb}]",
                nameof(selected));
        }

        // 2. The positions of the selected blocks, for each query head of the group [B, Hq, 1, L].
        var mask = new bool[bsz, hq, 1, l];
        for (int b = 0; b < bsz; b++)
        {
            for (int h = 0; h < hq; h++)
            {
                for (int j = 0; j < l; j++)
                    mask[b, h, 0, j] = selected[b, h / group, j / options.BlockSize];
            }
        }

        // 3. Attention under that mask.
        var result = DenseAttention.Compute(q, k, v, new AttentionOptions { Scale = options.Scale, Mask = mask });
        return new ResaStepResult(result.Out, result.Lse, (bool[,,])selected.Clone());
    }

    /// <summary>The number of blocks selected out of nb: min(nb, max(n_sel, min(n_local, nb))).</summary>
    /// <param name="blocks">nb, &gt;= 0.</param>
    /// <param name="options">Sparsity, n_local, n_min.</param>
    /// <returns>The count.</returns>
    public static int SelectedCount(int blocks, ResaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int nSel = Math.Max((int)Math.Ceiling(blocks * options.Sparsity), Math.Min(blocks, options.NMin));
        return Math.Min(blocks, Math.Max(nSel, Math.Min(options.NLocal, blocks)));
    }

    /// <summary>The selected blocks of each kv group: selected[b, g, c].</summary>
    /// <param name="q">Queries [B, Hq, 1, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, L, D], finite.</param>
    /// <param name="v">Values [B, Hkv, L, Dv] (checked for shape only).</param>
    /// <param name="options">Block size, sparsity, n_local, n_min.</param>
    /// <returns>selected [B, Hkv, ceil(L / b)].</returns>
    /// <exception cref="ArgumentException">As for <see cref="DecodeStep"/>.</exception>
    public static bool[,,] SelectBlocks(double[,,,] q, double[,,,] k, double[,,,] v, ResaOptions options)
    {
        // 1. The block scores (validating the inputs).
        var score = BlockScores(q, k, v, options);
        int bsz = score.GetLength(0), hkv = score.GetLength(1), nb = score.GetLength(2);
        int total = SelectedCount(nb, options), local = Math.Min(options.NLocal, nb);
        var selected = new bool[bsz, hkv, nb];
        for (int b = 0; b < bsz; b++)
        {
            for (int g = 0; g < hkv; g++)
            {
                // 2. The local blocks, then the best of the others.
                var others = new double[nb - local];
                for (int c = 0; c < nb - local; c++) others[c] = score[b, g, c];
                for (int c = nb - local; c < nb; c++) selected[b, g, c] = true;
                foreach (int c in Ranking.Top(others, total - local)) selected[b, g, c] = true;
            }
        }

        return selected;
    }

    /// <summary>The block scores score[b, g, c] = sum_d max(qbar_d kmax[c,d], qbar_d kmin[c,d]) of every block (local ones included).</summary>
    /// <param name="q">Queries [B, Hq, 1, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, L, D], finite.</param>
    /// <param name="v">Values [B, Hkv, L, Dv] (checked for shape only).</param>
    /// <param name="options">Block size, sparsity, n_local, n_min (all checked).</param>
    /// <returns>score [B, Hkv, ceil(L / b)].</returns>
    /// <exception cref="ArgumentException">As for <see cref="DecodeStep"/>.</exception>
    public static double[,,] BlockScores(double[,,,] q, double[,,,] k, double[,,,] v, ResaOptions options)
    {
        // 1. Validate.
        ArgumentNullException.ThrowIfNull(options);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (dims.Tq != 1) throw new ArgumentException($"q holds {dims.Tq} positions; a decode step takes exactly 1", nameof(q));
        if (dims.Tk < 1) throw new ArgumentException("the cache is empty; it must hold at least the new token", nameof(k));
        if (options.BlockSize < 1) throw new ArgumentException($"block size must be >= 1, got {options.BlockSize}", nameof(options));
        if (!(options.Sparsity > 0.0 && options.Sparsity <= 1.0))
            throw new ArgumentException($"sparsity must be in (0, 1], got {options.Sparsity}", nameof(options));
        if (options.NLocal < 0) throw new ArgumentException($"n_local must be >= 0, got {options.NLocal}", nameof(options));
        if (options.NMin < 0) throw new ArgumentException($"n_min must be >= 0, got {options.NMin}", nameof(options));
        AttentionCore.ResolveScale(options.Scale, 0.0, dims.D, nameof(options), nameof(options));

        int bs = options.BlockSize, l = dims.Tk, nb = (l + bs - 1) / bs;
        var score = new double[dims.B, dims.Hkv, nb];
        for (int b = 0; b < dims.B; b++)
        {
            for (int g = 0; g < dims.Hkv; g++)
            {
                // 2. The pooled query: mean over the group's heads, times D^-1/2.
                var qbar = new double[dims.D];
                for (int d = 0; d < dims.D; d++)
                {
                    double sum = 0.0;
                    for (int h = g * dims.Group; h < (g + 1) * dims.Group; h++) sum += q[b, h, 0, d];
                    qbar[d] = sum / dims.Group / Math.Sqrt(dims.D);
                }

                // 3. Block scores from the element-wise max and min of each block's keys.
                for (int c = 0; c < nb; c++)
                {
                    double s = 0.0;
                    for (int d = 0; d < dims.D; d++)
                    {
                        double max = double.NegativeInfinity, min = double.PositiveInfinity;
                        for (int j = c * bs; j < Math.Min(l, (c + 1) * bs); j++)
                        {
                            max = Math.Max(max, k[b, g, j, d]);
                            min = Math.Min(min, k[b, g, j, d]);
                        }
                        s += Math.Max(qbar[d] * max, qbar[d] * min);
                    }
                    score[b, g, c] = s;
                }
            }
        }

        return score;
    }
}
