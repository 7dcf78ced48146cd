namespace Reference.Attention;

/// <summary>
/// The fixed sparse-attention patterns as mask builders (proofs/attention.md, Definition: Fixed patterns): each returns a boolean mask,
/// true = allowed, to pass as <see cref="AttentionOptions.Mask"/> (through <see cref="Broadcast"/>) or to turn into a
/// <see cref="BlockMask"/> with <see cref="BlockMask.FromDenseMask"/>.
/// </summary>
/// <remarks>
/// <para>Positions are bottom-right aligned like the dense options: in a [Tq, Tk] mask, query row i sits at absolute
/// position p_i = i + Tk - Tq, and key column j at position j. For self-attention (Tq = Tk) this is p_i = i, the
/// papers' setting; with Tq &lt; Tk it gives the rows of a decoding step. BigBird is block-structured and is
/// defined for self-attention only (Tq = Tk = T).</para>
/// <para>Sources: Child et al. 2019, "Generating Long Sequences with Sparse Transformers" (strided, fixed);
/// Beltagy et al. 2020, "Longformer"; Zaheer et al. 2020, "Big Bird" (block-level ITC pattern).</para>
/// </remarks>
public static class MaskPatterns
{
    /// <summary>Causal mask: allowed(i, j) iff j &lt;= p_i.</summary>
    /// <param name="tq">Number of queries, &gt;= 0.</param>
    /// <param name="tk">Number of keys, &gt;= 0.</param>
    /// <returns>The mask, shape [Tq, Tk].</returns>
    public static bool[,] Causal(int tq, int tk) => SlidingWindow(tq, tk, -1, 0);

    /// <summary>
    /// Sliding window: allowed(i, j) iff p_i - left &lt;= j &lt;= p_i + right, a bound of -1 meaning unbounded on that side.
    /// The same rule as <see cref="AttentionOptions.WindowLeft"/> and <see cref="AttentionOptions.WindowRight"/>
    /// (FlashAttention's <c>window_size</c>; Mistral's sliding window is (W - 1, 0)).
    /// </summary>
    /// <param name="tq">Number of queries, &gt;= 0.</param>
    /// <param name="tk">Number of keys, &gt;= 0.</param>
    /// <param name="left">Keys visible to the left of p_i, or -1 for all.</param>
    /// <param name="right">Keys visible to the right of p_i, or -1 for all.</param>
    /// <returns>The mask, shape [Tq, Tk].</returns>
    public static bool[,] SlidingWindow(int tq, int tk, int left, int right)
    {
        RequireSizes(tq, tk);
        if (left < -1) throw new ArgumentException($"left must be -1 or >= 0, got {left}", nameof(left));
        if (right < -1) throw new ArgumentException($"right must be -1 or >= 0, got {right}", nameof(right));
        return Build(tq, tk, (p, j) => (left < 0 || j >= p - left) && (right < 0 || j <= p + right));
    }

    /// <summary>
    /// Strided pattern of Child et al. (2019), causal: allowed(i, j) iff j &lt;= p_i and
    /// (p_i - l &lt; j, the local part: the last l positions up to and including p_i; or (p_i - j) mod l = 0, the
    /// strided part: every l-th position back from p_i).
    /// </summary>
    /// <param name="tq">Number of queries, &gt;= 0.</param>
    /// <param name="tk">Number of keys, &gt;= 0.</param>
    /// <param name="stride">The stride l, &gt;= 1 (the paper takes l close to sqrt(T)).</param>
    /// <returns>The mask, shape [Tq, Tk].</returns>
    public static bool[,] Strided(int tq, int tk, int stride)
    {
        RequireSizes(tq, tk);
        if (stride < 1) throw new ArgumentException($"stride must be >= 1, got {stride}", nameof(stride));
        return Build(tq, tk, (p, j) => j <= p && (j > p - stride || (p - j) % stride == 0));
    }

    /// <summary>
    /// Fixed pattern of Child et al. (2019), causal (the variant for autoregressive models): allowed(i, j) iff
    /// j &lt;= p_i and (floor(j / l) = floor(p_i / l), the same block of l positions; or floor(j / l) &lt; floor(p_i / l)
    /// and j mod l &gt;= l - c, one of the last c "summary" positions of an earlier block).
    /// </summary>
    /// <param name="tq">Number of queries, &gt;= 0.</param>
    /// <param name="tk">Number of keys, &gt;= 0.</param>
    /// <param name="blockLength">The block length l, &gt;= 1.</param>
    /// <param name="summary">The number c of summary positions at the end of each block, 0..l.</param>
    /// <returns>The mask, shape [Tq, Tk].</returns>
    public static bool[,] Fixed(int tq, int tk, int blockLength, int summary)
    {
        RequireSizes(tq, tk);
        if (blockLength < 1) throw new ArgumentException($"blockLength must be >= 1, got {blockLength}", nameof(blockLength));
        if (summary < 0 || summary > blockLength)
            throw new ArgumentException($"summary must be in 0..{blockLength}, got {summary}", nameof(summary));
        // p >= j >= 0 whenever the first test passes, so the divisions below never see a negative position.
        return Build(tq, tk, (p, j) => j <= p
            && (j / blockLength == p / blockLength
                || (j / blockLength < p / blockLength && j % blockLength >= blockLength - summary)));
    }

    /// <summary>
    /// Longformer pattern (Beltagy et al. 2020), bidirectional: allowed(i, j) iff |p_i - j| &lt;= w (the sliding
    /// window of w positions on each side), or j is a global position (every query sees it: global column), or p_i is
    /// a global position (it sees every key: global row). Intersect with <see cref="Causal"/> (or set
    /// <see cref="AttentionOptions.Causal"/>) for a causal variant.
    /// </summary>
    /// <param name="tq">Number of queries, &gt;= 0.</param>
    /// <param name="tk">Number of keys, &gt;= 0.</param>
    /// <param name="oneSidedWindow">w, the positions visible on each side, &gt;= 0 (the paper's window size is 2w).</param>
    /// <param name="globalPositions">The global positions, each in 0..Tk-1; order and repeats do not matter.</param>
    /// <returns>The mask, shape [Tq, Tk].</returns>
    public static bool[,] Longformer(int tq, int tk, int oneSidedWindow, int[] globalPositions)
    {
        RequireSizes(tq, tk);
        ArgumentNullException.ThrowIfNull(globalPositions);
        if (oneSidedWindow < 0)
            throw new ArgumentException($"oneSidedWindow must be >= 0, got {oneSidedWindow}", nameof(oneSidedWindow));
        var isGlobal = new bool[tk];
        for (int n = 0; n < globalPositions.Length; n++)
        {
            int g = globalPositions[n];
            if (g < 0 || g >= tk)
                throw new ArgumentException($"globalPositions[{n}] = {g} is outside 0..{tk - 1}", nameof(globalPositions));
            isGlobal[g] = true;
        }
        return Build(tq, tk, (p, j) => Math.Abs(p - j) <= oneSidedWindow || isGlobal[j] || (p >= 0 && isGlobal[p]));
    }

    /// <summary>
    /// BigBird pattern (Zaheer et al. 2020, the block-level ITC variant) for self-attention over T positions cut into
    /// nb = ceil(T / blockSize) blocks. With query block a = floor(i / blockSize) and key block c = floor(j / blockSize):
    /// allowed(i, j) iff a &lt; g or c &lt; g (the first g blocks are global: they see and are seen by everything), or
    /// |a - c| &lt;= (w - 1) / 2 (a window of w blocks centred on the diagonal), or c is one of the r random blocks
    /// randomBlocks[a, 0..r-1]. The random blocks are an input, so the pattern involves no random number generator.
    /// </summary>
    /// <param name="t">Sequence length T, &gt;= 0.</param>
    /// <param name="blockSize">Block size, &gt;= 1.</param>
    /// <param name="windowBlocks">w, the window width in blocks, odd and &gt;= 1 (the paper uses 3).</param>
    /// <param name="globalBlocks">g, the number of leading global blocks, 0..nb.</param>
    /// <param name="randomBlocks">Random key blocks per query block, shape [nb, r], entries in 0..nb-1 (repeats and
    /// overlaps with the window or global blocks are allowed and change nothing).</param>
    /// <returns>The mask, shape [T, T].</returns>
    public static bool[,] BigBird(int t, int blockSize, int windowBlocks, int globalBlocks, int[,] randomBlocks)
    {
        bool[,] blocks = BigBirdBlocks(t, blockSize, windowBlocks, globalBlocks, randomBlocks);
        return Build(t, t, (p, j) => blocks[p / blockSize, j / blockSize]);
    }

    /// <summary>
    /// The BigBird pattern of <see cref="BigBird"/> as a <see cref="BlockMask"/> with tiles of blockSize x blockSize,
    /// batch and heads 1. Every listed tile is full (the pattern is constant on tiles), so no element mask is needed.
    /// </summary>
    /// <param name="t">Sequence length T, &gt;= 0.</param>
    /// <param name="blockSize">Block size and tile size, &gt;= 1.</param>
    /// <param name="windowBlocks">w, the window width in blocks, odd and &gt;= 1.</param>
    /// <param name="globalBlocks">g, the number of leading global blocks, 0..nb.</param>
    /// <param name="randomBlocks">Random key blocks per query block, shape [nb, r], entries in 0..nb-1.</param>
    /// <returns>The block mask; its <see cref="BlockMask.ToDenseMask"/> equals <see cref="BigBird"/>.</returns>
    public static BlockMask BigBirdBlockMask(int t, int blockSize, int windowBlocks, int globalBlocks, int[,] randomBlocks) =>
        BlockMask.FromDenseMask(Broadcast(BigBird(t, blockSize, windowBlocks, globalBlocks, randomBlocks)), blockSize, blockSize);

    /// <summary>Views a [Tq, Tk] mask as [1, 1, Tq, Tk], the broadcastable shape <see cref="AttentionOptions.Mask"/> takes.</summary>
    /// <param name="mask">A mask of shape [Tq, Tk].</param>
    /// <returns>A copy of shape [1, 1, Tq, Tk].</returns>
    public static bool[,,,] Broadcast(bool[,] mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        var result = new bool[1, 1, mask.GetLength(0), mask.GetLength(1)];
        for (int i = 0; i < mask.GetLength(0); i++)
        {
            for (int j = 0; j < mask.GetLength(1); j++)
                result[0, 0, i, j] = mask[i, j];
        }

        return result;
    }

    /// <summary>The block-level BigBird pattern, [nb, nb].</summary>
    private static bool[,] BigBirdBlocks(int t, int blockSize, int windowBlocks, int globalBlocks, int[,] randomBlocks)
    {
        if (t < 0) throw new ArgumentException($"t must be >= 0, got {t}", nameof(t));
        ArgumentNullException.ThrowIfNull(randomBlocks);
        if (blockSize < 1) throw new ArgumentException($"blockSize must be >= 1, got {blockSize}", nameof(blockSize));
        int nb = (t + blockSize - 1) / blockSize;
        if (windowBlocks < 1 || windowBlocks % 2 == 0)
            throw new ArgumentException($"windowBlocks must be odd and >= 1, got {windowBlocks}", nameof(windowBlocks));
        if (globalBlocks < 0 || globalBlocks > nb)
            throw new ArgumentException($"globalBlocks must be in 0..{nb}, got {globalBlocks}", nameof(globalBlocks));
        if (randomBlocks.GetLength(0) != nb)
            throw new ArgumentException($"randomBlocks has {randomBlocks.GetLength(0)} rows, expected nb = {nb}", nameof(randomBlocks));

        int radius = (windowBlocks - 1) / 2;
        var blocks = new bool[nb, nb];
        for (int a = 0; a < nb; a++)
        {
            for (int c = 0; c < nb; c++)
                blocks[a, c] = a < globalBlocks || c < globalBlocks || Math.Abs(a - c) <= radius;
            for (int n = 0; n < randomBlocks.GetLength(1); n++)
            {
                int c = randomBlocks[a, n];
                if (c < 0 || c >= nb)
                    throw new ArgumentException($"randomBlocks[{a}, {n}] = {c} is outside 0..{nb - 1}", nameof(randomBlocks));
                blocks[a, c] = true;
            }
        }
        return blocks;
    }

    private static void RequireSizes(int tq, int tk)
    {
        if (tq < 0) throw new ArgumentException($"tq must be >= 0, got {tq}", nameof(tq));
        if (tk < 0) throw new ArgumentException($"tk must be >= 0, got {tk}", nameof(tk));
    }

    /// <summary>mask[i, j] = allowed(p_i, j) with p_i = i + Tk - Tq.</summary>
    private static bool[,] Build(int tq, int tk, Func<int, int, bool> allowed)
    {
        var mask = new bool[tq, tk];
        for (int i = 0; i < tq; i++)
        {
            for (int j = 0; j < tk; j++)
                mask[i, j] = allowed(i + tk - tq, j);
        }

        return mask;
    }
}
