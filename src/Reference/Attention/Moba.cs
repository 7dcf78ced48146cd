using Reference.Routing;

namespace Reference.Attention;

/// <summary>Options of <see cref="Moba"/> (CLI algorithm <c>moba</c>).</summary>
public sealed record MobaOptions
{
    /// <summary>The chunk size Bc, &gt;= 1: keys are cut into chunks [c Bc, (c+1) Bc), the last one possibly short.</summary>
    public required int ChunkSize { get; init; }

    /// <summary>How many chunks each query keeps, &gt;= 1; the query's own chunk counts toward it.</summary>
    public required int TopK { get; init; }

    /// <summary>The score scale of the attention; null (the default) means 1/sqrt(D). The gate is unscaled.</summary>
    public double? Scale { get; init; }
}

/// <summary>
/// Mixture of Block Attention (MoBA), the naive reference (CLI algorithm <c>moba</c>, proofs/attention-sparse.md, Definition: MoBA):
/// each query picks the top-k key chunks by a gate and attends causally to the keys of the picked chunks.
/// </summary>
/// <remarks>
/// <para>Shapes: self-attention, q, k [B, H, T, D], v [B, H, T, Dv] (one kv head per query head).</para>
/// <para>Math, for each (b, h) and query t, with nc = ceil(T / Bc) chunks and K_c the keys of chunk c:</para>
/// <code>
/// g[t, c] = q_t . mean(K_c)                         mean over the chunk's actual keys, no scale
/// g[t, c] = -Inf   if t &lt; (c + 1) Bc               chunk not complete at t (future or current)
/// g[t, c] = +Inf   if c = floor(t / Bc)             the current chunk: always selected, counts toward k
/// S_t     = top-min(k, nc) chunks by g              larger first, ties to the lower chunk index
/// A_t     = { j : chunk(j) in S_t, j &lt;= t }
/// out, lse = attention of q_t over A_t (scale, softmax), exactly as <see cref="DenseAttention"/> with mask A
/// </code>
/// <para>Chunks with gate -Inf may fill the top-k when fewer than k chunks are complete; their keys are all after t
/// (the current chunk is +Inf), so the causal rule removes them and they change nothing.</para>
/// <para>Source: Lu et al. 2025, "MoBA: Mixture of Block Attention for Long-Context LLMs" (Moonshot AI), the
/// brute-force reference <c>moba_attn_varlen_naive</c>.</para>
/// </remarks>
public static class Moba
{
    /// <summary>MoBA attention in double precision.</summary>
    /// <param name="q">Queries [B, H, T, D], finite.</param>
    /// <param name="k">Keys [B, H, T, D], finite.</param>
    /// <param name="v">Values [B, H, T, Dv], finite.</param>
    /// <param name="options">Chunk size, top-k, scale.</param>
    /// <returns>out [B, H, T, Dv] and lse [B, H, T].</returns>
    /// <exception cref="ArgumentException">Shapes differ from self-attention with equal heads, an entry is not finite,
    /// or an option is out of range.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, MobaOptions options)
    {
        // 1. The allowed set from the gate and the selection.
        var mask = Mask(q, k, v, options);
        // 2. Attention under that mask.
        return DenseAttention.Compute(q, k, v, DenseOptions(options, mask));
    }

    /// <summary>The options of step 2: the scale, and the mask of the selected chunks (shared with <see cref="MobaFast"/>).</summary>
    internal static AttentionOptions DenseOptions(MobaOptions options, bool[,,,] mask) => new() { Scale = options.Scale, Mask = mask };

    /// <summary>The chunks each query selects: selected[b, h, t, c].</summary>
    /// <param name="q">Queries [B, H, T, D], finite.</param>
    /// <param name="k">Keys [B, H, T, D], finite.</param>
    /// <param name="v">Values [B, H, T, Dv] (checked for shape only).</param>
    /// <param name="options">Chunk size and top-k.</param>
    /// <returns>selected [B, H, T, ceil(T / Bc)]; exactly min(k, nc) entries of each row are true.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute"/>.</exception>
    public static bool[,,,] SelectedChunks(double[,,,] q, double[,,,] k, double[,,,] v, MobaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (dims.Hkv != dims.Hq)
            throw new ArgumentException($"k has {dims.Hkv} heads but q has {dims.Hq}; MoBA takes one kv head per query head", nameof(k));
        if (dims.Tk != dims.Tq)
            throw new ArgumentException($"k has {dims.Tk} positions but q has {dims.Tq}; MoBA is self-attention (Tq = Tk)", nameof(k));
        if (options.ChunkSize < 1)
            throw new ArgumentException($"chunk size must be >= 1, got {options.ChunkSize}", nameof(options));
        if (options.TopK < 1)
            throw new ArgumentException($"top_k must be >= 1, got {options.TopK}", nameof(options));
        AttentionCore.ResolveScale(options.Scale, 0.0, dims.D, nameof(options), nameof(options));

        int t = dims.Tq, bc = options.ChunkSize, chunks = (t + bc - 1) / bc, keep = Math.Min(options.TopK, chunks);
        var selected = new bool[dims.B, dims.Hq, t, chunks];
        var gate = new double[chunks];
        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                // 1. Chunk representatives: the mean of each chunk's actual keys [nc, D].
                var mean = new double[chunks, dims.D];
                for (int c = 0; c < chunks; c++)
                {
                    int start = c * bc, end = Math.Min(t, start + bc);
                    for (int d = 0; d < dims.D; d++)
                    {
                        double sum = 0.0;
                        for (int j = start; j < end; j++) sum += k[b, h, j, d];
                        mean[c, d] = sum / (end - start);
                    }
                }
                for (int i = 0; i < t; i++)
                {
                    // 2. Gates: q_i . mean(K_c), then -Inf for incomplete chunks and +Inf for the current chunk.
                    for (int c = 0; c < chunks; c++)
                    {
                        double dot = 0.0;
                        for (int d = 0; d < dims.D; d++) dot += q[b, h, i, d] * mean[c, d];
                        gate[c] = i < (c + 1) * bc ? double.NegativeInfinity : dot;
                    }
                    gate[i / bc] = double.PositiveInfinity;

                    // 3. Top-min(k, nc) by the ranking rule.
                    foreach (int c in Ranking.Top(gate, keep)) selected[b, h, i, c] = true;
                }
            }
        }

        return selected;
    }

    /// <summary>The allowed set A as a mask: key j allowed for query t iff chunk(j) is selected and j &lt;= t.</summary>
    /// <param name="q">Queries [B, H, T, D], finite.</param>
    /// <param name="k">Keys [B, H, T, D], finite.</param>
    /// <param name="v">Values [B, H, T, Dv] (checked for shape only).</param>
    /// <param name="options">Chunk size and top-k.</param>
    /// <returns>mask [B, H, T, T].</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute"/>.</exception>
    public static bool[,,,] Mask(double[,,,] q, double[,,,] k, double[,,,] v, MobaOptions options)
    {
        var selected = SelectedChunks(q, k, v, options);
        int bs = selected.GetLength(0), hs = selected.GetLength(1), t = selected.GetLength(2), bc = options.ChunkSize;
        var mask = new bool[bs, hs, t, t];
        for (int b = 0; b < bs; b++)
        {
            for (int h = 0; h < hs; h++)
            {
                for (int i = 0; i < t; i++)
                {
                    for (int j = 0; j <= i; j++)
                        mask[b, h, i, j] = selected[b, h, i, j / bc];
                }
            }
        }

        return mask;
    }
}
