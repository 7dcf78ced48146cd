namespace Reference.Attention;

/// <summary>How a (query tile, key tile) pair is listed in a <see cref="BlockMask"/>.</summary>
public enum TileKind
{
    /// <summary>Not listed: no key of the tile is attended.</summary>
    Absent,
    /// <summary>Listed in kv_indices: the element mask decides each (i, j); without one the whole tile is attended.</summary>
    Partial,
    /// <summary>Listed in full_kv_indices: every (i, j) of the tile is attended and the element mask is not consulted.</summary>
    Full,
}

/// <summary>
/// A tile-level sparsity description with PyTorch FlexAttention's <c>BlockMask</c> semantics
/// (proofs/attention.md, Definition: Block-sparse attention (BlockMask), CLI algorithm <c>block-sparse</c>).
/// </summary>
/// <remarks>
/// <para>Queries are cut into nq = ceil(Tq / BlockQ) tiles of BlockQ rows and keys into nk = ceil(Tk / BlockK) tiles of
/// BlockK columns (the last tile of each may be short). For query tile r of (b, h):</para>
/// <code>
/// kv_num_blocks[b,h,r]            number of partial tiles listed, 0..nk
/// kv_indices[b,h,r,0..n-1]        their key-tile indices, strictly ascending, in 0..nk-1 (entries past n are ignored)
/// full_kv_num_blocks[b,h,r]       the same for full tiles (optional; absent means no full tiles)
/// full_kv_indices[b,h,r,0..n-1]
/// Allowed(i, j) = j &lt; Tk and (tile(i,j) listed full, or tile(i,j) listed partial and mask(i, j))
/// </code>
/// <para>A tile may not be listed both partial and full. The batch and head dimensions are either 1 (broadcast) or
/// the full B and Hq of the attention call, as in FlexAttention. The object is immutable: the constructor copies
/// the arrays it is given, and callers must not modify the arrays the properties return.</para>
/// <para>Source: PyTorch <c>torch.nn.attention.flex_attention.BlockMask</c> (Dong et al. 2024, "Flex Attention").</para>
/// </remarks>
public sealed class BlockMask
{
    /// <summary>Creates and validates a block mask.</summary>
    /// <param name="kvNumBlocks">Partial tiles per query tile, shape [Bm, Hm, nq], entries in 0..nk.</param>
    /// <param name="kvIndices">Partial key-tile indices, shape [Bm, Hm, nq, nk]; the first kvNumBlocks entries of each
    /// row strictly ascending in 0..nk-1.</param>
    /// <param name="fullKvNumBlocks">Full tiles per query tile, shape [Bm, Hm, nq], or null for none.</param>
    /// <param name="fullKvIndices">Full key-tile indices, shape [Bm, Hm, nq, nk], or null; given exactly when
    /// <paramref name="fullKvNumBlocks"/> is.</param>
    /// <param name="blockQ">Query tile size, &gt;= 1.</param>
    /// <param name="blockK">Key tile size, &gt;= 1.</param>
    /// <param name="tq">Number of queries Tq, &gt;= 0.</param>
    /// <param name="tk">Number of keys Tk, &gt;= 0.</param>
    /// <exception cref="ArgumentException">A shape, count or index is out of range, indices are not strictly ascending,
    /// or a tile is listed both partial and full; the message names the array and the first offending index.</exception>
    public BlockMask(int[,,] kvNumBlocks, int[,,,] kvIndices, int[,,]? fullKvNumBlocks, int[,,,]? fullKvIndices,
                     int blockQ, int blockK, int tq, int tk)
    {
        ArgumentNullException.ThrowIfNull(kvNumBlocks);
        ArgumentNullException.ThrowIfNull(kvIndices);
        if (blockQ < 1) throw new ArgumentException($"blockQ must be >= 1, got {blockQ}", nameof(blockQ));
        if (blockK < 1) throw new ArgumentException($"blockK must be >= 1, got {blockK}", nameof(blockK));
        if (tq < 0) throw new ArgumentException($"tq must be >= 0, got {tq}", nameof(tq));
        if (tk < 0) throw new ArgumentException($"tk must be >= 0, got {tk}", nameof(tk));
        if ((fullKvNumBlocks is null) != (fullKvIndices is null))
        {
            throw new ArgumentException("fullKvNumBlocks and fullKvIndices must be given together",
                fullKvNumBlocks is null ? nameof(fullKvNumBlocks) : nameof(fullKvIndices));
        }

        BlockQ = blockQ;
        BlockK = blockK;
        Tq = tq;
        Tk = tk;
        int batch = kvNumBlocks.GetLength(0), heads = kvNumBlocks.GetLength(1);
        if (batch < 1 || heads < 1)
            throw new ArgumentException($"kvNumBlocks has shape [{batch}, {heads}, {kvNumBlocks.GetLength(2)}]; batch and heads must be >= 1", nameof(kvNumBlocks));

        ValidateList(kvNumBlocks, kvIndices, nameof(kvNumBlocks), nameof(kvIndices), batch, heads);
        if (fullKvNumBlocks is not null && fullKvIndices is not null)
        {
            ValidateList(fullKvNumBlocks, fullKvIndices, nameof(fullKvNumBlocks), nameof(fullKvIndices), batch, heads);
            RequireDisjoint(kvNumBlocks, kvIndices, fullKvNumBlocks, fullKvIndices);
        }

        KvNumBlocks = (int[,,])kvNumBlocks.Clone();
        KvIndices = (int[,,,])kvIndices.Clone();
        FullKvNumBlocks = (int[,,]?)fullKvNumBlocks?.Clone();
        FullKvIndices = (int[,,,]?)fullKvIndices?.Clone();
    }

    /// <summary>Partial tiles per query tile, shape [Bm, Hm, nq].</summary>
    public int[,,] KvNumBlocks { get; }

    /// <summary>Partial key-tile indices, shape [Bm, Hm, nq, nk].</summary>
    public int[,,,] KvIndices { get; }

    /// <summary>Full tiles per query tile, shape [Bm, Hm, nq], or null.</summary>
    public int[,,]? FullKvNumBlocks { get; }

    /// <summary>Full key-tile indices, shape [Bm, Hm, nq, nk], or null.</summary>
    public int[,,,]? FullKvIndices { get; }

    /// <summary>Query tile size QB.</summary>
    public int BlockQ { get; }

    /// <summary>Key tile size KB.</summary>
    public int BlockK { get; }

    /// <summary>Number of queries Tq.</summary>
    public int Tq { get; }

    /// <summary>Number of keys Tk.</summary>
    public int Tk { get; }

    /// <summary>Bm, the batch dimension of the mask (1 = broadcast over the batch).</summary>
    public int Batch => KvNumBlocks.GetLength(0);

    /// <summary>Hm, the head dimension of the mask (1 = broadcast over the query heads).</summary>
    public int Heads => KvNumBlocks.GetLength(1);

    /// <summary>nq = ceil(Tq / BlockQ).</summary>
    public int QueryBlocks => CeilDiv(Tq, BlockQ);

    /// <summary>nk = ceil(Tk / BlockK).</summary>
    public int KeyBlocks => CeilDiv(Tk, BlockK);

    /// <summary>
    /// How tile (queryBlock, keyBlock) is listed for batch b and query head h (a broadcast dimension is read at 0).
    /// </summary>
    /// <param name="b">Batch index (0 when the mask broadcasts over the batch, or any index below B).</param>
    /// <param name="h">Query head index.</param>
    /// <param name="queryBlock">Query tile index, 0..nq-1.</param>
    /// <param name="keyBlock">Key tile index, 0..nk-1.</param>
    public TileKind Kind(int b, int h, int queryBlock, int keyBlock)
    {
        int bb = Batch == 1 ? 0 : b, hh = Heads == 1 ? 0 : h;
        if (FullKvNumBlocks is not null && FullKvIndices is not null)
        {
            for (int n = 0; n < FullKvNumBlocks[bb, hh, queryBlock]; n++)
                if (FullKvIndices[bb, hh, queryBlock, n] == keyBlock) return TileKind.Full;
        }

        for (int n = 0; n < KvNumBlocks[bb, hh, queryBlock]; n++)
            if (KvIndices[bb, hh, queryBlock, n] == keyBlock) return TileKind.Partial;
        return TileKind.Absent;
    }

    /// <summary>
    /// Builds the block mask of a dense mask: a tile whose (in-range) entries are all true is full, a tile with some
    /// true entries is partial, a tile with none is absent (FlexAttention's <c>create_block_mask</c> rule).
    /// </summary>
    /// <param name="mask">The dense mask, shape [Bm, Hm, Tq, Tk], true = allowed.</param>
    /// <param name="blockQ">Query tile size, &gt;= 1.</param>
    /// <param name="blockK">Key tile size, &gt;= 1.</param>
    /// <returns>A block mask with both lists present; <c>ToDenseMask(mask)</c> gives back <paramref name="mask"/>.</returns>
    public static BlockMask FromDenseMask(bool[,,,] mask, int blockQ, int blockK)
    {
        ArgumentNullException.ThrowIfNull(mask);
        if (blockQ < 1) throw new ArgumentException($"blockQ must be >= 1, got {blockQ}", nameof(blockQ));
        if (blockK < 1) throw new ArgumentException($"blockK must be >= 1, got {blockK}", nameof(blockK));
        int batch = mask.GetLength(0), heads = mask.GetLength(1), tq = mask.GetLength(2), tk = mask.GetLength(3);
        if (batch < 1 || heads < 1)
            throw new ArgumentException($"mask has batch {batch} and heads {heads}; both must be >= 1", nameof(mask));
        int nq = CeilDiv(tq, blockQ), nk = CeilDiv(tk, blockK);

        var partialCount = new int[batch, heads, nq];
        var partialIndex = new int[batch, heads, nq, nk];
        var fullCount = new int[batch, heads, nq];
        var fullIndex = new int[batch, heads, nq, nk];
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int r = 0; r < nq; r++)
                {
                    for (int c = 0; c < nk; c++)   // ascending c keeps both lists ascending
                    {
                        // 1. Count the true entries of tile (r, c), clipped to the array.
                        int rows = Math.Min(blockQ, tq - r * blockQ), cols = Math.Min(blockK, tk - c * blockK);
                        int trues = 0;
                        for (int i = r * blockQ; i < r * blockQ + rows; i++)
                        {
                            for (int j = c * blockK; j < c * blockK + cols; j++)
                                if (mask[b, h, i, j]) trues++;
                        }

                        // 2. All true: full; some true: partial; none: absent.
                        if (trues == rows * cols)
                            fullIndex[b, h, r, fullCount[b, h, r]++] = c;
                        else if (trues > 0)
                            partialIndex[b, h, r, partialCount[b, h, r]++] = c;
                    }
                }
            }
        }

        return new BlockMask(partialCount, partialIndex, fullCount, fullIndex, blockQ, blockK, tq, tk);
    }

    /// <summary>
    /// Expands the block mask to the dense mask it stands for:
    /// Allowed(i, j) = tile listed full, or tile listed partial and elementMask(i, j) (true when elementMask is null).
    /// </summary>
    /// <param name="elementMask">The element mask consulted inside partial tiles, shape broadcastable against
    /// [Bm, Hm, Tq, Tk] (each dimension 1 or the size of the other), or null to attend partial tiles whole.</param>
    /// <returns>The dense mask, shape [max(Bm, Be), max(Hm, He), Tq, Tk].</returns>
    /// <exception cref="ArgumentException">The element mask does not broadcast against the block mask.</exception>
    public bool[,,,] ToDenseMask(bool[,,,]? elementMask)
    {
        // 1. The broadcast batch and head sizes.
        int batch = Batch, heads = Heads;
        if (elementMask is not null)
        {
            batch = BroadcastSize(Batch, elementMask.GetLength(0), 0, elementMask);
            heads = BroadcastSize(Heads, elementMask.GetLength(1), 1, elementMask);
            AttentionCore.ValidateMask(elementMask, nameof(elementMask), batch, heads, Tq, Tk);
        }

        // 2. Fill each listed tile; keys and queries past the end are clipped away.
        var dense = new bool[batch, heads, Tq, Tk];
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int r = 0; r < QueryBlocks; r++)
                {
                    for (int c = 0; c < KeyBlocks; c++)
                    {
                        TileKind kind = Kind(b, h, r, c);
                        if (kind == TileKind.Absent) continue;
                        for (int i = r * BlockQ; i < Math.Min(Tq, (r + 1) * BlockQ); i++)
                        {
                            for (int j = c * BlockK; j < Math.Min(Tk, (c + 1) * BlockK); j++)
                            {
                                dense[b, h, i, j] = kind == TileKind.Full
                                    || elementMask is null
                                    || AttentionCore.MaskAt(elementMask, b, h, i, j);
                            }
                        }
                    }
                }
            }
        }

        return dense;
    }

    /// <summary>Checks that the block mask fits an attention call with the given sizes (B, Hq, Tq, Tk).</summary>
    /// <param name="batch">B of the attention call.</param>
    /// <param name="queryHeads">Hq of the attention call.</param>
    /// <param name="tq">Tq of the attention call.</param>
    /// <param name="tk">Tk of the attention call.</param>
    /// <param name="paramName">The argument name to report.</param>
    /// <exception cref="ArgumentException">Batch or heads neither 1 nor the call's size, or Tq/Tk differ.</exception>
    public void RequireCompatible(int batch, int queryHeads, int tq, int tk, string paramName)
    {
        if (Batch != 1 && Batch != batch)
            throw new ArgumentException($"block mask has batch {Batch}, expected 1 or {batch}", paramName);
        if (Heads != 1 && Heads != queryHeads)
            throw new ArgumentException($"block mask has {Heads} heads, expected 1 or {queryHeads}", paramName);
        if (Tq != tq || Tk != tk)
            throw new ArgumentException($"block mask is for Tq = {Tq}, Tk = {Tk} but the inputs have Tq = {tq}, Tk = {tk}", paramName);
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;

    private static int BroadcastSize(int mine, int theirs, int dim, bool[,,,] elementMask)
    {
        if (mine == theirs || theirs == 1) return mine;
        if (mine == 1) return theirs;
        throw new ArgumentException($"elementMask dimension {dim} is {theirs}, which does not broadcast against the block mask's {mine}",
            nameof(elementMask));
    }

    private void ValidateList(int[,,] counts, int[,,,] indices, string countsName, string indicesName, int batch, int heads)
    {
        int nq = QueryBlocks, nk = KeyBlocks;
        if (counts.GetLength(0) != batch || counts.GetLength(1) != heads || counts.GetLength(2) != nq)
        {
            throw new ArgumentException(
                $"{countsName} has shape [{counts.GetLength(0)}, {counts.GetLength(1)}, {counts.GetLength(2)}], expected [{batch}, {heads}, {nq}]",
                countsName);
        }

        if (indices.GetLength(0) != batch || indices.GetLength(1) != heads || indices.GetLength(2) != nq || indices.GetLength(3) != nk)
        {
            throw new ArgumentException(
                $"{indicesName} has shape [{indices.GetLength(0)}, {indices.GetLength(1)}, {indices.GetLength(2)}, {indices.GetLength(3)}], " +
                $"expected [{batch}, {heads}, {nq}, {nk}]", indicesName);
        }

        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int r = 0; r < nq; r++)
                {
                    int count = counts[b, h, r];
                    if (count < 0 || count > nk)
                        throw new ArgumentException($"{countsName}[{b}, {h}, {r}] = {count} is outside 0..{nk}", countsName);
                    for (int n = 0; n < count; n++)
                    {
                        int index = indices[b, h, r, n];
                        if (index < 0 || index >= nk)
                            throw new ArgumentException($"{indicesName}[{b}, {h}, {r}, {n}] = {index} is outside 0..{nk - 1}", indicesName);
                        if (n > 0 && index <= indices[b, h, r, n - 1])
                        {
                            throw new ArgumentException(
                                $"{indicesName}[{b}, {h}, {r}, {n}] = {index} does not exceed the previous entry {indices[b, h, r, n - 1]}; the listed tiles must be strictly ascending",
                                indicesName);
                        }
                    }
                }
            }
        }
    }

    private static void RequireDisjoint(int[,,] counts, int[,,,] indices, int[,,] fullCounts, int[,,,] fullIndices)
    {
        for (int b = 0; b < counts.GetLength(0); b++)
        {
            for (int h = 0; h < counts.GetLength(1); h++)
            {
                for (int r = 0; r < counts.GetLength(2); r++)
                {
                    for (int n = 0; n < fullCounts[b, h, r]; n++)
                    {
                        for (int m = 0; m < counts[b, h, r]; m++)
                        {
                            if (fullIndices[b, h, r, n] == indices[b, h, r, m])
                            {
                                throw new ArgumentException(
                                    $"fullKvIndices[{b}, {h}, {r}, {n}] = {fullIndices[b, h, r, n]} is also listed in kvIndices[{b}, {h}, {r}, {m}]; a tile is either partial or full",
                                    "fullKvIndices");
                            }
                        }
                    }
                }
            }
        }
    }
}
