namespace Reference.Routing;

/// <summary>
/// The project's one ranking rule (proofs/conventions.md, Definition: Ranking and ties): larger value first, ties to the lower index.
/// Written as an explicit comparison, so it never inherits the tie order of an unstable sort.
/// </summary>
public static class Ranking
{
    /// <summary>True when index <paramref name="a"/> with value <paramref name="va"/> ranks before
    /// index <paramref name="b"/> with value <paramref name="vb"/>: a larger value, or an equal value and a lower index.</summary>
    public static bool RanksBefore(double va, int a, double vb, int b) => va > vb || (va == vb && a < b);

    /// <summary>The indices of the <paramref name="k"/> largest values, best first.</summary>
    /// <param name="values">The values to rank; NaN is not allowed (the callers reject it first).</param>
    /// <param name="k">How many to keep, 0..values.Count.</param>
    /// <returns>k distinct indices in rank order.</returns>
    public static int[] Top(IReadOnlyList<double> values, int k)
    {
        ArgumentNullException.ThrowIfNull(values);
        Guard.InRange(k, 0, values.Count, nameof(k));
        // Selection by repeated scans: O(k * n), plain on purpose.
        var chosen = new bool[values.Count];
        var result = new int[k];
        for (int slot = 0; slot < k; slot++)
        {
            int best = -1;
            for (int j = 0; j < values.Count; j++)
            {
                if (!chosen[j] && (best < 0 || RanksBefore(values[j], j, values[best], best)))
                {
                    best = j;
                }
            }
            chosen[best] = true;
            result[slot] = best;
        }
        return result;
    }

    /// <summary>The same indices as <see cref="Top"/>, written into <paramref name="top"/> without allocating, for the fast
    /// paths and the validators that rank every row of a large matrix: scanning indices upwards, an index enters only ahead
    /// of those with a strictly smaller value, so equal values keep the lower index first. O(k·n) in the worst case, about
    /// n when few values displace the current k best.</summary>
    /// <param name="values">The values to rank; NaN is not allowed (the callers reject it first).</param>
    /// <param name="top">Receives the top.Length best indices, best first; top.Length is at most values.Length.</param>
    public static void TopInto(ReadOnlySpan<double> values, Span<int> top)
    {
        int m = top.Length, count = 0;
        Guard.InRange(m, 0, values.Length, nameof(top));
        for (int x = 0; x < values.Length && m > 0; x++)
        {
            double v = values[x];
            if (count == m && !(v > values[top[m - 1]]))
            {
                continue;
            }
            int pos = count == m ? m - 1 : count;
            while (pos > 0 && v > values[top[pos - 1]])
            {
                top[pos] = top[pos - 1];
                pos--;
            }
            top[pos] = x;
            if (count < m)
            {
                count++;
            }
        }
    }

    /// <summary>Sorts <paramref name="order"/> by ascending <paramref name="negatedKeys"/> (no NaN), then each run of equal
    /// keys by ascending index: the order of <see cref="RanksBefore"/> on the un-negated values, built with primitive sorts
    /// instead of a comparison delegate (for the fast paths that rank long arrays).</summary>
    /// <param name="negatedKeys">The values, negated; sorted along with <paramref name="order"/>.</param>
    /// <param name="order">The indices of the values, in any order on entry; in rank order on return.</param>
    internal static void SortNegated(double[] negatedKeys, int[] order)
    {
        Array.Sort(negatedKeys, order);
        for (int start = 0; start < order.Length;)
        {
            int end = start + 1;
            while (end < order.Length && negatedKeys[end] == negatedKeys[start])
            {
                end++;
            }
            if (end - start > 1)
            {
                Array.Sort(order, start, end - start);
            }
            start = end;
        }
    }

    /// <summary>All indices sorted by the ranking rule, best first (a stable descending order).</summary>
    public static int[] Order(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var order = Enumerable.Range(0, values.Count).ToArray();
        Array.Sort(order, (a, b) => RanksBefore(values[a], a, values[b], b) ? -1 : RanksBefore(values[b], b, values[a], a) ? 1 : 0);
        return order;
    }
}
