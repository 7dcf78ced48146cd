using Reference.Routing;

namespace Reference.Attention;

/// <summary>Options of <see cref="Nsa"/> (CLI algorithm <c>nsa</c>).</summary>
public sealed record NsaOptions
{
    /// <summary>The block size BS of compression and selection, &gt;= 1. Default 64.</summary>
    public int BlockSize { get; init; } = 64;

    /// <summary>How many blocks S each query's kv group selects, &gt;= 1 (the own block included). Default 16.</summary>
    public int TopN { get; init; } = 16;

    /// <summary>The sliding window W, &gt;= 0: query t attends keys max(0, t - W + 1)..t; 0 turns the branch off
    /// (its output is 0, as in the fla code with <c>window_size = 0</c>). Default 512.</summary>
    public int Window { get; init; } = 512;

    /// <summary>The score scale of all three branches; null (the default) means 1/sqrt(D).</summary>
    public double? Scale { get; init; }
}

/// <summary>The outputs of <see cref="Nsa"/>: the gated sum and each branch.</summary>
public sealed record NsaResult
{
    /// <summary>Creates a result (arrays stored, not copied).</summary>
    /// <param name="out">The gated output [B, Hq, T, Dv].</param>
    /// <param name="selected">The selected blocks [B, Hkv, T, nb].</param>
    /// <param name="compressed">The compressed branch [B, Hq, T, Dv].</param>
    /// <param name="selectedOut">The selected branch [B, Hq, T, Dv].</param>
    /// <param name="window">The sliding-window branch [B, Hq, T, Dv].</param>
    public NsaResult(double[,,,] @out, bool[,,,] selected, double[,,,] compressed, double[,,,] selectedOut, double[,,,] window)
    {
        Out = @out;
        Selected = selected;
        Compressed = compressed;
        SelectedOut = selectedOut;
        Window = window;
    }

    /// <summary>out = g_cmp o_cmp + g_slc o_slc + g_win o_win, shape [B, Hq, T, Dv].</summary>
    public double[,,,] Out { get; }

    /// <summary>selected[b, g, t, c]: kv group g selected block c for query t, shape [B, Hkv, T, ceil(T / BS)].</summary>
    public bool[,,,] Selected { get; }

    /// <summary>o_cmp: attention over the visible compressed blocks (0 when none is visible), [B, Hq, T, Dv].</summary>
    public double[,,,] Compressed { get; }

    /// <summary>o_slc: attention over the keys j &lt;= t of the selected blocks, [B, Hq, T, Dv].</summary>
    public double[,,,] SelectedOut { get; }

    /// <summary>o_win: attention over the keys max(0, t - W + 1)..t (0 when W = 0), [B, Hq, T, Dv].</summary>
    public double[,,,] Window { get; }
}

/// <summary>
/// Native Sparse Attention (NSA), three gated branches (CLI algorithm <c>nsa</c>, proofs/attention-sparse.md, Definition: NSA).
/// </summary>
/// <remarks>
/// <para>Shapes: q [B, Hq, T, D], k [B, Hkv, T, D], v [B, Hkv, T, Dv], gates [B, Hq, T, 3] (g_cmp, g_slc, g_win);
/// Hkv divides Hq and query head h belongs to kv group g = h / (Hq / Hkv). Self-attention: position t is query t and key t.</para>
/// <para>Math, with BS the block size, nb = ceil(T / BS), own(t) = floor(t / BS):</para>
/// <code>
/// k_cmp[c] = mean(k[c BS .. min(T, (c+1) BS) - 1]),  v_cmp likewise     compression by mean pooling
/// V_t      = { c : (c + 1) BS &lt;= t + 1 }                              compressed blocks visible to t
/// P_h[t,c] = softmax_{c in V_t}(scale q_{h,t} . k_cmp[c]),  o_cmp = sum_c P_h[t,c] v_cmp[c]   (0 if V_t empty)
/// score_g[t,c] = sum_{h in group g} P'_h[t,c],  P' = P with P'[t, own(t)] = 1                 for c &lt;= own(t)
/// S_g(t)   = own(t), then the top S - 1 of { c &lt; own(t) } by score (larger first, ties to the lower block)
/// o_slc    = attention of q_{h,t} over { j &lt;= t : block(j) in S_g(t) }
/// o_win    = attention of q_{h,t} over { j : max(0, t - W + 1) &lt;= j &lt;= t }
/// out      = (g_cmp o_cmp + g_slc o_slc) + g_win o_win
/// </code>
/// <para>Decisions (proofs/attention-sparse.md): blocks after the own block are never candidates and no block is
/// listed twice (the fla varlen path pads the list with block 0); the own block is always selected, ranked before
/// every other block: its summed score G can tie with a block whose probability is exactly 1 in every head (a lone
/// visible block), and the literal tie rule would then drop the own block at S = 1. The three attentions are
/// <see cref="DenseAttention"/> under the corresponding masks, so each branch is bit-identical to it.</para>
/// <para>Sources: Yuan et al. 2025, "Native Sparse Attention: Hardware-Aligned and Natively Trainable Sparse
/// Attention" (DeepSeek); the naive reference of fla-org/native-sparse-attention (<c>naive_nsa</c>, compression
/// <c>mean_pooling</c>, selection <c>naive_nsa_topk</c>).</para>
/// </remarks>
public static class Nsa
{
    /// <summary>NSA in double precision.</summary>
    /// <param name="q">Queries [B, Hq, T, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, T, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values [B, Hkv, T, Dv], finite.</param>
    /// <param name="gates">Gates [B, Hq, T, 3] = (g_cmp, g_slc, g_win), finite.</param>
    /// <param name="options">Block size, top-n, window, scale.</param>
    /// <returns>The gated output, the selection and the three branches.</returns>
    /// <exception cref="ArgumentException">A shape does not match, an entry is not finite, or an option is out of range.</exception>
    public static NsaResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options) =>
        Run(q, k, v, gates, options, DenseAttention.Compute);

    /// <summary><see cref="Compute"/> with the dense
    /// attention of the branches given (<see cref="NsaFast"/> passes <see cref="DenseAttentionFast.Compute"/>).</summary>
    internal static NsaResult Run(double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options, Attend attend)
    {
        // 1. Validate; 2. select; 3. the three branches and their gated sum.
        var (dims, scale) = Validate(q, k, v, gates, options);
        var selected = Select(SelectionScores(q, k, dims, scale, options.BlockSize), dims, options.BlockSize, options.TopN);
        return Branches(q, k, v, gates, dims, scale, options, selected, attend);
    }

    /// <summary>Dense attention as the branches call it: <see cref="DenseAttention.Compute(double[,,,], double[,,,], double[,,,], AttentionOptions)"/>
    /// or a function equal to it bit for bit.</summary>
    internal delegate AttentionResult Attend(double[,,,] q, double[,,,] k, double[,,,] v, AttentionOptions options);

    /// <summary>
    /// NSA with a given selection instead of the top-n rule: the compressed and window branches as in
    /// <see cref="Compute"/>, the selected branch over the keys j &lt;= t of the blocks <paramref name="selected"/> marks.
    /// The checker uses it to judge an output computed with a different but valid tie-break (proofs/tolerance.md, Definition: Decisions and near-ties).
    /// </summary>
    /// <param name="q">Queries [B, Hq, T, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, T, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values [B, Hkv, T, Dv], finite.</param>
    /// <param name="gates">Gates [B, Hq, T, 3], finite.</param>
    /// <param name="options">Block size, window, scale (top-n is not used).</param>
    /// <param name="selected">The selection [B, Hkv, T, ceil(T / BS)]; blocks after the query are harmless (masked by j &lt;= t).</param>
    /// <returns>The result, with <paramref name="selected"/> as its selection.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute"/>, or <paramref name="selected"/> has the wrong shape.</exception>
    public static NsaResult ComputeWithSelection(
        double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options, bool[,,,] selected) =>
        RunWithSelection(q, k, v, gates, options, selected, DenseAttention.Compute);

    /// <summary><see cref="ComputeWithSelection"/> with the dense attention of the branches given.</summary>
    internal static NsaResult RunWithSelection(
        double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options, bool[,,,] selected, Attend attend)
    {
        var (dims, scale) = Validate(q, k, v, gates, options);
        ArgumentNullException.ThrowIfNull(selected);
        int nb = (dims.Tq + options.BlockSize - 1) / options.BlockSize;
        if (selected.GetLength(0) != dims.B || selected.GetLength(1) != dims.Hkv || selected.GetLength(2) != dims.Tq || selected.GetLength(3) != nb)
        {
            throw new ArgumentException(
                $"selected has shape [{selected.GetLength(0)}, {selected.GetLength(1)}, {selected.GetLength(2)}, {selected.GetLength(3)}], expected [{dims.B}, {dims.Hkv}, {dims.Tq}, {nb}]",
                nameof(selected));
        }

        return Branches(q, k, v, gates, dims, scale, options, selected, attend);
    }

    /// <summary>
    /// The selection scores score_g[t, c] = sum over the query heads h of kv group g of the compressed probability
    /// P_h[t, c], for the candidate blocks c &lt; own(t) = floor(t / BS); entries c &gt;= own(t) are 0 (the own block is
    /// forced, later blocks are never candidates). Shape [B, Hkv, T, ceil(T / BS)].
    /// </summary>
    /// <param name="q">Queries [B, Hq, T, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, T, D], finite.</param>
    /// <param name="v">Values [B, Hkv, T, Dv] (checked for shape only).</param>
    /// <param name="gates">Gates [B, Hq, T, 3] (checked only).</param>
    /// <param name="options">Block size and scale.</param>
    /// <returns>The scores the top-n rule ranks.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute"/>.</exception>
    public static double[,,,] SelectionScores(double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options)
    {
        var (dims, scale) = Validate(q, k, v, gates, options);
        return SelectionScores(q, k, dims, scale, options.BlockSize);
    }

    /// <summary>Checks shapes, finiteness and options; returns the dimensions and the resolved scale.</summary>
    private static (AttentionCore.Dims Dims, double Scale) Validate(double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(gates);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (dims.Tk != dims.Tq)
            throw new ArgumentException($"k has {dims.Tk} positions but q has {dims.Tq}; NSA is self-attention", nameof(k));
        if (gates.GetLength(0) != dims.B || gates.GetLength(1) != dims.Hq || gates.GetLength(2) != dims.Tq || gates.GetLength(3) != 3)
        {
            throw new ArgumentException(
                $"gates has shape [{gates.GetLength(0)}, {gates.GetLength(1)}, {gates.GetLength(2)}, {gates.GetLength(3)}], expected [{dims.B}, {dims.Hq}, {dims.Tq}, 3]",
                nameof(gates));
        }

        AttentionCore.RequireFinite(gates, nameof(gates));
        if (options.BlockSize < 1) throw new ArgumentException($"block size must be >= 1, got {options.BlockSize}", nameof(options));
        if (options.TopN < 1) throw new ArgumentException($"top_n must be >= 1, got {options.TopN}", nameof(options));
        if (options.Window < 0) throw new ArgumentException($"window must be >= 0, got {options.Window}", nameof(options));
        double scale = AttentionCore.ResolveScale(options.Scale, 0.0, dims.D, nameof(options), nameof(options));
        return (dims, scale);
    }

    /// <summary>The three branches under a given selection and their gated sum.</summary>
    private static NsaResult Branches(
        double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, AttentionCore.Dims dims, double scale, NsaOptions options, bool[,,,] selected,
        Attend attend)
    {
        int t = dims.Tq, bs = options.BlockSize, nb = (t + bs - 1) / bs;

        // 1. Compression: mean-pool keys and values over each block's actual positions [B, Hkv, nb, D | Dv].
        var kCmp = Pool(k, bs, nb);
        var vCmp = Pool(v, bs, nb);

        // 2. Compressed branch: dense attention over the visible compressed blocks.
        var visible = new bool[1, 1, t, nb];
        for (int i = 0; i < t; i++)
        {
            for (int c = 0; c < nb; c++)
                visible[0, 0, i, c] = (c + 1) * bs <= i + 1;
        }

        var compressed = attend(q, kCmp, vCmp, new AttentionOptions { Scale = scale, Mask = visible }).Out;

        // 3. Selected branch: keys j <= t of the selected blocks.
        var selectedMask = new bool[dims.B, dims.Hq, t, t];
        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                for (int i = 0; i < t; i++)
                {
                    for (int j = 0; j <= i; j++)
                        selectedMask[b, h, i, j] = selected[b, h / dims.Group, i, j / bs];
                }
            }
        }

        var selectedOut = attend(q, k, v, new AttentionOptions { Scale = scale, Mask = selectedMask }).Out;

        // 4. Sliding-window branch: causal with W - 1 keys to the left (off when W = 0).
        var window = options.Window == 0
            ? new double[dims.B, dims.Hq, t, dims.Dv]
            : attend(q, k, v, new AttentionOptions { Scale = scale, Causal = true, WindowLeft = options.Window - 1 }).Out;

        // 5. The gated sum, in the order (g_cmp o_cmp + g_slc o_slc) + g_win o_win.
        var output = new double[dims.B, dims.Hq, t, dims.Dv];
        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                for (int i = 0; i < t; i++)
                {
                    for (int d = 0; d < dims.Dv; d++)
                    {
                        output[b, h, i, d] = gates[b, h, i, 0] * compressed[b, h, i, d] + gates[b, h, i, 1] * selectedOut[b, h, i, d]
                                             + gates[b, h, i, 2] * window[b, h, i, d];
                    }
                }
            }
        }

        return new NsaResult(output, (bool[,,,])selected.Clone(), compressed, selectedOut, window);
    }

    /// <summary>The compression branch's pooling: the mean of each block's actual positions, x [B, H, T, E] to
    /// [B, H, nb, E] (the last block may be partial).</summary>
    /// <param name="x">Keys or values [B, H, T, E].</param>
    /// <param name="bs">The block size BS.</param>
    /// <param name="nb">The number of blocks, ceil(T / BS).</param>
    /// <returns>The pooled blocks [B, H, nb, E].</returns>
    public static double[,,,] Pool(double[,,,] x, int bs, int nb)
    {
        int bsz = x.GetLength(0), heads = x.GetLength(1), t = x.GetLength(2), e = x.GetLength(3);
        var pooled = new double[bsz, heads, nb, e];
        for (int b = 0; b < bsz; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int c = 0; c < nb; c++)
                {
                    int start = c * bs, end = Math.Min(t, start + bs);
                    for (int d = 0; d < e; d++)
                    {
                        double sum = 0.0;
                        for (int j = start; j < end; j++) sum += x[b, h, j, d];
                        pooled[b, h, c, d] = sum / (end - start);
                    }
                }
            }
        }

        return pooled;
    }

    /// <summary>score_g[t, c] = sum over the group's heads of the compressed probability of block c, for c &lt; own(t); else 0.</summary>
    private static double[,,,] SelectionScores(double[,,,] q, double[,,,] k, AttentionCore.Dims dims, double scale, int bs)
    {
        int nb = (dims.Tq + bs - 1) / bs;
        var kCmp = Pool(k, bs, nb);
        var score = new double[dims.B, dims.Hkv, dims.Tq, nb];
        for (int b = 0; b < dims.B; b++)
        {
            for (int g = 0; g < dims.Hkv; g++)
            {
                for (int i = 0; i < dims.Tq; i++)
                {
                    for (int h = g * dims.Group; h < (g + 1) * dims.Group; h++)
                    {
                        var p = CompressedProbabilities(q, kCmp, b, h, g, i, scale, bs, nb);
                        for (int c = 0; c < i / bs; c++) score[b, g, i, c] += p[c];
                    }
                }
            }
        }

        return score;
    }

    /// <summary>The selected blocks [B, Hkv, T, nb]: the own block, then the top S - 1 earlier blocks by score.</summary>
    private static bool[,,,] Select(double[,,,] score, AttentionCore.Dims dims, int bs, int topN)
    {
        int nb = score.GetLength(3);
        var selected = new bool[dims.B, dims.Hkv, dims.Tq, nb];
        for (int b = 0; b < dims.B; b++)
        {
            for (int g = 0; g < dims.Hkv; g++)
            {
                for (int i = 0; i < dims.Tq; i++)
                {
                    int own = i / bs;
                    var row = new double[own];
                    for (int c = 0; c < own; c++) row[c] = score[b, g, i, c];
                    selected[b, g, i, own] = true;
                    foreach (int c in Ranking.Top(row, Math.Min(topN - 1, own))) selected[b, g, i, c] = true;
                }
            }
        }

        return selected;
    }

    /// <summary>softmax over the visible compressed blocks of scale q_{h,i} . k_cmp[c]; 0 for invisible blocks.</summary>
    private static double[] CompressedProbabilities(double[,,,] q, double[,,,] kCmp, int b, int h, int g, int i, double scale, int bs, int nb)
    {
        var p = new double[nb];
        int visible = Math.Min(nb, (i + 1) / bs);       // blocks c with (c + 1) bs <= i + 1
        if (visible == 0) return p;
        double m = double.NegativeInfinity;
        for (int c = 0; c < visible; c++)
        {
            double dot = 0.0;
            for (int d = 0; d < q.GetLength(3); d++) dot += q[b, h, i, d] * kCmp[b, g, c, d];
            p[c] = scale * dot;
            m = Math.Max(m, p[c]);
        }
        double sum = 0.0;
        for (int c = 0; c < visible; c++)
        {
            p[c] = Math.Exp(p[c] - m);
            sum += p[c];
        }
        for (int c = 0; c < visible; c++) p[c] /= sum;
        return p;
    }
}
