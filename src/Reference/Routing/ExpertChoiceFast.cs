namespace Reference.Routing;

/// <summary>
/// Expert-choice routing by sorting instead of repeated scans: equal to the readable reference
/// <see cref="ExpertChoice.Route"/> in every output (proofs/expert-choice.md, theorem expert-choice.fast-reference-identical).
/// Used by <c>check expert-choice</c> beyond the size documented there: the reference's selection costs E C N comparisons
/// (2^32 at N = 65536, E = 64, C = 1024), this one a histogram pass and a sort of the tokens that can be
/// among the best C (O(E (N + C' log C')), C' about C), experts in parallel.
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="ExpertChoice.Route"/>; the scores P are computed by
/// the operations of <see cref="RouterScores.Compute"/> in the same order, row by row, rows in parallel (as in
/// <see cref="TopKFast"/>).</para>
/// <para>Why the outputs are identical: <see cref="Ranking.RanksBefore"/> (larger score first, ties to the lower index) is a
/// strict total order on the tokens, and the reference's repeated scans pick its first C elements in order. For P &gt;= 0 the
/// bit pattern orders like the value, so every token among the first C has its top 16 bits at least those of the C-th
/// best score, the threshold bucket found from the histogram; sorting the tokens at or above it by descending score and
/// then, within each run of equal scores, by ascending index gives the order's first C entries, the same tokens; gates and
/// counts are read off them as in the reference.</para>
/// </remarks>
public static class ExpertChoiceFast
{
    /// <summary>Routes as <see cref="ExpertChoice.Route"/> does, with the same result.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">Capacity, capacity factor and k.</param>
    /// <returns>tokens [E, C], gates [E, C], count [N], C, and the scores P.</returns>
    /// <exception cref="ArgumentException">As for <see cref="ExpertChoice.Route"/>.</exception>
    public static ExpertChoiceResult Route(double[,] logits, ExpertChoiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1);
        if (e == 0)
        {
            throw new ArgumentException("logits has E = 0 experts; routing needs at least one", nameof(logits));
        }
        int c = ExpertChoice.ResolveCapacity(n, e, options);
        // P as RouterScores.Compute gives it (the same checks, then each row's operations in the same order), rows in
        // parallel, with its transpose [E, N] so that each expert reads its scores contiguously.
        Guard.Finite(logits, nameof(logits));
        var p = new double[n, e];
        var pt = new double[(long)e * n];
        RowBlocks.For(n, i =>
        {
            RouterScores.ComputeRow(logits, p, i, ScoreFunction.Softmax);
            for (int x = 0; x < e; x++)
            {
                pt[(long)x * n + i] = p[i, x];
            }
        });

        // Each expert keeps the tokens whose score can be among its best C (a histogram of the scores' top 16 bits finds
        // the bucket of the C-th best), sorts them by -P (ascending), then each run of equal scores by token index.
        var tokens = new int[e, c];
        var gates = new double[e, c];
        Parallel.For(0, e, () => (new double[n], new int[n], new int[Buckets]), (x, _, buffers) =>
        {
            var (keys, order, histogram) = buffers;
            if (c == 0)
            {
                return buffers;
            }
            var column = pt.AsSpan(x * n, n); // P[:, x]
            Array.Clear(histogram);
            for (int i = 0; i < n; i++)
            {
                histogram[Bucket(column[i])]++;
            }
            int threshold = Buckets - 1;
            for (int above = histogram[threshold]; above < c; above += histogram[threshold])
            {
                threshold--;
            }
            int m = 0;
            for (int i = 0; i < n; i++)
            {
                if (Bucket(column[i]) >= threshold)
                {
                    keys[m] = -column[i];
                    order[m++] = i;
                }
            }
            Array.Sort(keys, order, 0, m);
            for (int start = 0; start < c;)
            {
                int end = start + 1;
                while (end < m && keys[end] == keys[start]) end++;
                if (end - start > 1) Array.Sort(order, start, end - start);
                start = end;
            }
            for (int slot = 0; slot < c; slot++)
            {
                tokens[x, slot] = order[slot];
                gates[x, slot] = p[order[slot], x];
            }
            return buffers;
        }, _ => { });
        var count = new int[n];
        for (int x = 0; x < e; x++)
        {
            for (int slot = 0; slot < c; slot++) count[tokens[x, slot]]++;
        }
        return new ExpertChoiceResult(tokens, gates, count, c) { Scores = p };
    }

    /// <summary>Histogram buckets: the top 16 bits of a non-negative double.</summary>
    private const int Buckets = 1 << 16;

    /// <summary>The top 16 bits of P &gt;= 0 (sign, exponent and 4 significand bits): larger P, same or larger bucket.</summary>
    private static int Bucket(double score) => (int)(BitConverter.DoubleToUInt64Bits(score) >> 48);
}
