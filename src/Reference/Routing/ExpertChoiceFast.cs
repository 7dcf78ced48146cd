namespace Reference.Routing;

/// <summary>
/// Expert-choice routing by sorting instead of repeated scans: equal to the readable reference
/// <see cref="ExpertChoice.Route"/> in every output (proofs/expert-choice.md, theorem expert-choice.fast-reference-identical).
/// Used by <c>check expert-choice</c> beyond the size documented there: the reference's selection costs E C N comparisons
/// (2^32 at N = 65536, E = 64, C = 1024), this one O(E N log N), experts in parallel.
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="ExpertChoice.Route"/>; the scores P are computed by
/// the same <see cref="RouterScores.Compute"/>.</para>
/// <para>Why the outputs are identical: <see cref="Ranking.RanksBefore"/> (larger score first, ties to the lower index) is a
/// strict total order on the tokens, and the reference's repeated scans pick its first C elements in order. Sorting the
/// tokens by descending score and then, within each run of equal scores, by ascending index gives the same order, so its
/// first C entries are the same tokens; gates and counts are read off them as in the reference.</para>
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
        var p = RouterScores.Compute(logits, ScoreFunction.Softmax);

        // Each expert sorts its column: by -P (ascending), then each run of equal scores by token index.
        var tokens = new int[e, c];
        var gates = new double[e, c];
        Parallel.For(0, e, () => (new double[n], new int[n]), (x, _, buffers) =>
        {
            var (keys, order) = buffers;
            for (int i = 0; i < n; i++)
            {
                keys[i] = -p[i, x];
                order[i] = i;
            }
            Array.Sort(keys, order);
            for (int start = 0; start < c;)
            {
                int end = start + 1;
                while (end < n && keys[end] == keys[start]) end++;
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
}
