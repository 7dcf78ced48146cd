using System.Numerics;
using System.Runtime.Intrinsics;

namespace Reference.Kernels.Routing;

/// <summary>
/// The MaxScore fast solver's row ranking: a token's best experts by reduced score row[x] - price[x], descending, ties to
/// the lower index, with the largest reduced score left out. Two implementations give identical results: insertion into a
/// short list (any width) and counting with vector compares (no branches on the data, for rows of up to
/// <see cref="CountingUpTo"/> experts).
/// </summary>
internal static class RowRanking
{
    /// <summary>Up to this many experts a row is ranked by counting (<see cref="RankByCounting"/>); beyond, by insertion,
    /// whose branches are well predicted once the list's last value is high.</summary>
    internal const int CountingUpTo = 32;

    /// <summary>Ranks by counting when the row is short enough and vectors are accelerated, else by insertion; both give
    /// the same result (see <see cref="RankByInsertion"/> for the outputs).</summary>
    internal static int Rank(ReadOnlySpan<double> row, ReadOnlySpan<double> price, Span<int> idx, Span<double> val, out double rest) =>
        row.Length <= CountingUpTo && Vector256.IsHardwareAccelerated
            ? RankByCounting(row, price, idx, val, out rest)
            : RankByInsertion(row, price, idx, val, out rest);

    /// <summary>
    /// Ranks the reduced scores row[x] - price[x] by insertion into a list of idx.Length (descending, ties to the lower
    /// index): the indices and values of the best min(idx.Length, row.Length), unused tail entries -1 and -Inf, and the
    /// largest reduced score left out in <paramref name="rest"/> (-Inf when none is). Returns how many are listed. The list
    /// holds at least one (idx.Length >= 1, as the solver always asks).
    /// </summary>
    internal static int RankByInsertion(ReadOnlySpan<double> row, ReadOnlySpan<double> price, Span<int> idx, Span<double> val,
        out double rest)
    {
        int m = idx.Length, count = 0;
        double last = double.NegativeInfinity; // the m-th value, once m are held
        rest = double.NegativeInfinity;
        for (int x = 0; x < row.Length; x++)
        {
            double r = row[x] - price[x];
            int pos;
            if (count == m)
            {
                if (!(r > last))
                {
                    rest = Math.Max(rest, r);
                    continue;
                }
                rest = Math.Max(rest, last); // the m-th leaves
                pos = m - 1;
            }
            else
            {
                pos = count++;
            }
            while (pos > 0 && r > val[pos - 1])
            {
                val[pos] = val[pos - 1];
                idx[pos] = idx[pos - 1];
                pos--;
            }
            val[pos] = r;
            idx[pos] = x;
            if (count == m)
            {
                last = val[m - 1];
            }
        }
        for (int j = count; j < m; j++)
        {
            val[j] = double.NegativeInfinity;
            idx[j] = -1;
        }
        return count;
    }

    /// <summary>
    /// <see cref="RankByInsertion"/> without branches on the data: expert x's rank is the
    /// number of experts before it (a higher reduced score, or an equal one and a lower index). Ranks are counted four
    /// experts at a time: each other expert's score is compared with the four at once and the compare masks (all ones,
    /// that is -1) are subtracted from the four counts. Ranks are a permutation of 0..E-1, so scattering each expert to
    /// its rank orders the row exactly as the insertion ranking does; the expert of rank idx.Length holds the largest
    /// score left out.
    /// </summary>
    internal static int RankByCounting(ReadOnlySpan<double> row, ReadOnlySpan<double> price, Span<int> idx, Span<double> val,
        out double rest)
    {
        int e = row.Length, m = idx.Length, blocks = (e + 3) >> 2;
        Span<double> r = stackalloc double[blocks * 4];
        Span<long> ranks = stackalloc long[blocks * 4];
        Span<int> order = stackalloc int[e + 1];
        for (int x = 0; x < e; x++)
        {
            r[x] = row[x] - price[x];
        }
        r[e..].Fill(double.NegativeInfinity); // padding lanes: ranked, never read, never counted
        var lane = Vector256.Create(0L, 1L, 2L, 3L);
        for (int b = 0; b < blocks; b++)
        {
            int lo = b * 4;
            var mine = Vector256.Create(r.Slice(lo, 4));
            var rank = Vector256<long>.Zero;
            for (int y = 0; y < lo; y++) // lower indices: an equal score comes first
            {
                rank -= Vector256.GreaterThanOrEqual(Vector256.Create(r[y]), mine).AsInt64();
            }
            for (int y = lo; y < lo + 4 && y < e; y++) // the block itself: equal scores come first when y is below the lane
            {
                var other = Vector256.Create(r[y]);
                var below = Vector256.GreaterThan(lane, Vector256.Create((long)(y - lo))).AsDouble();
                rank -= (Vector256.GreaterThan(other, mine) | (Vector256.Equals(other, mine) & below)).AsInt64();
            }
            for (int y = lo + 4; y < e; y++) // higher indices: only a higher score comes first
            {
                rank -= Vector256.GreaterThan(Vector256.Create(r[y]), mine).AsInt64();
            }
            rank.CopyTo(ranks.Slice(lo, 4));
        }
        order[e] = -1;
        for (int x = 0; x < e; x++)
        {
            order[(int)ranks[x]] = x;
        }
        int count = Math.Min(m, e);
        for (int j = 0; j < count; j++)
        {
            idx[j] = order[j];
            val[j] = r[order[j]];
        }
        for (int j = count; j < m; j++)
        {
            val[j] = double.NegativeInfinity;
            idx[j] = -1;
        }
        rest = m < e ? r[order[m]] : double.NegativeInfinity;
        return count;
    }
}
