namespace Reference.Attention;

/// <summary>
/// Block-sparse attention driven by a <see cref="BlockMask"/>, with FlexAttention semantics: the reference for the
/// CLI algorithm <c>block-sparse</c> (proofs/attention.md, Definition: Block-sparse attention (BlockMask)).
/// </summary>
/// <remarks>
/// <para>Shapes: q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv]; GQA as in <see cref="DenseAttention"/>.</para>
/// <para>Math: dense attention over the allowed set
/// A_i = { j &lt; Tk : tile(i, j) is listed full, or listed partial and elementMask[b,h,i,j] }.
/// The reference walks the tiles the way the FlexAttention kernel does (query tile by query tile, only the listed key
/// tiles, the element mask consulted only inside partial tiles), but it visits a row's listed tiles in ascending
/// key-tile order, merging the partial and the full list. The allowed keys are therefore met in ascending j, the
/// order <see cref="DenseAttention"/> uses, so the result equals dense attention under
/// <see cref="BlockMask.ToDenseMask"/> bit for bit (proofs/attention.md, attention.block-sparse-equivalence).</para>
/// <para>Source: PyTorch FlexAttention (Dong et al. 2024), <c>flex_attention(q, k, v, block_mask=...)</c> with a
/// <c>mask_mod</c> given here as the element mask.</para>
/// </remarks>
public static class BlockSparseAttention
{
    /// <summary>Block-sparse attention in double precision.</summary>
    /// <param name="q">Queries, shape [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys, shape [B, Hkv, Tk, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values, shape [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="blockMask">The tiles to visit; its batch and heads are 1 or B and Hq, and its Tq, Tk match q and k.</param>
    /// <param name="elementMask">Consulted inside partial tiles only, shape broadcastable to [B, Hq, Tq, Tk];
    /// null attends partial tiles whole.</param>
    /// <param name="scale">Score scale; null means 1/sqrt(D).</param>
    /// <param name="softcap">Softcap c (c*tanh(s/c) before masking); 0 means none.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq]; a row with no allowed key gives 0 and -Infinity.</returns>
    /// <exception cref="ArgumentException">A shape does not match, an entry is NaN or infinite, a mask does not
    /// fit, or scale/softcap are out of range.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, BlockMask blockMask,
                                          bool[,,,]? elementMask, double? scale, double softcap)
    {
        // 1. Validate.
        var (dims, s) = Validate(q, k, v, blockMask, elementMask, scale, softcap);

        var output = new double[dims.B, dims.Hq, dims.Tq, dims.Dv];   // [B, Hq, Tq, Dv]
        var lse = new double[dims.B, dims.Hq, dims.Tq];               // [B, Hq, Tq]
        var keys = new List<int>(dims.Tk);
        var scores = new List<double>(dims.Tk);
        var tiles = new List<(int Index, TileKind Kind)>(blockMask.KeyBlocks);

        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                int kvh = h / dims.Group;
                for (int r = 0; r < blockMask.QueryBlocks; r++)
                {
                    // 2. The key tiles listed for query tile r, ascending: merge kv_indices and full_kv_indices.
                    ListedTiles(blockMask, b, h, r, tiles);

                    for (int i = r * blockMask.BlockQ; i < Math.Min(dims.Tq, (r + 1) * blockMask.BlockQ); i++)
                    {
                        // 3. Walk the listed tiles; inside a partial tile the element mask decides, a full tile is taken whole.
                        keys.Clear();
                        scores.Clear();
                        foreach (var (c, kind) in tiles)
                        {
                            for (int j = c * blockMask.BlockK; j < Math.Min(dims.Tk, (c + 1) * blockMask.BlockK); j++)
                            {
                                bool allowed = kind == TileKind.Full
                                    || elementMask is null
                                    || AttentionCore.MaskAt(elementMask, b, h, i, j);
                                if (!allowed) continue;
                                keys.Add(j);
                                scores.Add(AttentionCore.Score(q, k, b, h, i, kvh, j, s, softcap, AttentionCore.Exact));
                            }
                        }

                        // 4. Softmax over the allowed keys (0 and -Inf when there are none).
                        AttentionCore.SoftmaxRow(keys, scores, v, b, kvh, output, lse, h, i, AttentionCore.Exact);
                    }
                }
            }
        }

        return new AttentionResult(output, lse);
    }

    /// <summary>The listed key tiles of query tile r for (b, h), in ascending tile order, each with its kind.</summary>
    /// <summary>Step 1 of <see cref="Compute"/>: the checks, in order, and the resolved scale (shared with
    /// <see cref="BlockSparseAttentionFast"/>, which must reject the same inputs with the same messages).</summary>
    internal static (AttentionCore.Dims Dims, double Scale) Validate(
        double[,,,] q, double[,,,] k, double[,,,] v, BlockMask blockMask, bool[,,,]? elementMask, double? scale, double softcap)
    {
        ArgumentNullException.ThrowIfNull(blockMask);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        double s = AttentionCore.ResolveScale(scale, softcap, dims.D, nameof(scale), nameof(softcap));
        blockMask.RequireCompatible(dims.B, dims.Hq, dims.Tq, dims.Tk, nameof(blockMask));
        AttentionCore.ValidateMask(elementMask, nameof(elementMask), dims.B, dims.Hq, dims.Tq, dims.Tk);
        return (dims, s);
    }

    private static void ListedTiles(BlockMask mask, int b, int h, int r, List<(int, TileKind)> tiles)
    {
        int bb = mask.Batch == 1 ? 0 : b, hh = mask.Heads == 1 ? 0 : h;
        int partialCount = mask.KvNumBlocks[bb, hh, r];
        int fullCount = mask.FullKvNumBlocks?[bb, hh, r] ?? 0;
        int p = 0, f = 0;
        tiles.Clear();
        // Both lists are strictly ascending and disjoint (the constructor checked), so a merge yields ascending tiles.
        while (p < partialCount || f < fullCount)
        {
            int nextPartial = p < partialCount ? mask.KvIndices[bb, hh, r, p] : int.MaxValue;
            int nextFull = f < fullCount ? mask.FullKvIndices![bb, hh, r, f] : int.MaxValue;
            if (nextPartial < nextFull) { tiles.Add((nextPartial, TileKind.Partial)); p++; }
            else { tiles.Add((nextFull, TileKind.Full)); f++; }
        }
    }
}
