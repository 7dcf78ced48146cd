// Phase 1 of the MaxScore fast solver: approximate prices. Coordinate steps on the dual (first on a subsample of the
// tokens, then on all of them) move each expert's price lambda_x to where at most C tokens want x; short of capacity the
// real experts start priced against the stand-ins. The prices need not be exact: phase 2 (MaxScoreSolver.Assignment.cs,
// MaxScoreSolver.ExcessRouting.cs) starts from them and repairs what they leave over capacity, and phase 3
// (MaxScoreSolver.ExactFinish.cs) certifies exactly. The sweep over all tokens keeps its ranked lists (State.ranked) so
// that the assignment reads each token's top k from them.

using System.Numerics;

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    private sealed partial class State
    {
        /// <summary>Phase 1 stops once the tokens over capacity are few enough that placing them by shortest paths costs less
        /// than more sweeps: a sweep costs about E m steps; an augmentation about E^2 for Dijkstra plus, now and then, a rescan
        /// of an expert's m k / E holders (when a pair's short list of best tokens runs dry). A sweep removes about half the
        /// excess, so phase 1 stops at an excess of at most this multiple of E m / (E^2 + m k / E). The multiple was measured
        /// (512/16/2, 4096/64/8, 16384/64/8, 100000/8/2, 8192/256/4).</summary>
        private const double EnoughPerExpert = 6;

        private long Enough(int m) => (long)(EnoughPerExpert * m * e / ((double)e * e + (double)m * k / e));

        /// <summary>The subsample that phase 1 prices first: every stride-th token, about max(8 E, min(1024, N / 4)) of them
        /// (measured: a quarter of the tokens prices well enough that 512/16/2 needs no sweep over all tokens, 0.65 ms to
        /// 0.45 ms; 1024 suffice however many tokens there are; fewer than 8 per expert price poorly).</summary>
        private const int SamplePerExpert = 8, SampleTokens = 1024, SampleFraction = 4;

        /// <summary>
        /// Gauss-Seidel coordinate steps on the dual, first on a subsample of the tokens (with the capacity scaled down), then
        /// on all tokens: expert x's price becomes the smallest price (at least 0) at which at most C tokens still want x, given
        /// the other prices. Returns the sweeps done over all tokens.
        /// </summary>
        public int ApproximatePrices(int sweeps)
        {
            if (sweeps <= 0 || n <= cap.Min())
            {
                return 0; // with N <= C no expert can overflow: prices stay 0
            }
            if (real < e)
            {
                PriceAgainstStandIns();
            }
            int stride = Math.Max(1, n / Math.Max(SamplePerExpert * e, Math.Min(SampleTokens, n / SampleFraction)));
            if (stride > 1)
            {
                var sample = Enumerable.Range(0, (n + stride - 1) / stride).Select(j => j * stride).ToArray();
                var sampleCapacity = cap.Select(x => (int)Math.Ceiling((double)x * sample.Length / n)).ToArray();
                new PriceSweeps(this, sample, sampleCapacity).Run(2 * sweeps, Enough(sample.Length));
            }
            ranked = new PriceSweeps(this, Enumerable.Range(0, n).ToArray(), cap);
            return ranked.Run(sweeps, Enough(n));
        }

        /// <summary>
        /// Short of capacity, every real price must rise to about the scores' level minus the stand-ins' score D before tokens
        /// give way to stand-ins, which coordinate steps reach only slowly (all real experts are over capacity together). Start
        /// each real expert x at the price where it competes with the stand-ins alone: at most C tokens have S_ix - lambda_x
        /// above D, i.e. lambda_x = max(0, (C+1)-th largest S_.x - D). Competition among real experts only lowers demand, and
        /// the sweeps that follow lower such prices again.
        /// </summary>
        private void PriceAgainstStandIns()
        {
            double d = s[real];
            var column = new double[n];
            for (int x = 0; x < real; x++)
            {
                for (int i = 0; i < n; i++)
                {
                    column[i] = s[i * e + x];
                }
                double q = NthLargest(column, cap[x]);
                lambda[x] = double.IsFinite(q) ? Math.Max(0.0, q - d) : 0.0;
            }
        }

        /// <summary>
        /// Coordinate steps on the dual over a set of tokens. Each token keeps a prefix of its ranking by reduced score
        /// S_ix - lambda_x (descending, ties to the lower index): between k + 1 and k + 1 + <see cref="Slack"/> entries, or all E.
        /// The threshold of expert x needs only the first k + 1. A price change moves x within the lists that hold it (or
        /// drops it off the end, or lets it in); a list is ranked again from the scores only when it falls below k + 1.
        /// </summary>
        private sealed class PriceSweeps
        {
            private const int Slack = 3;
            private readonly State st;
            private readonly int[] tokensUsed;
            private readonly int[] capacity;   // [E]
            private readonly int m, w, words, full;
            private readonly int[] idx;        // [m, w] the ranked prefix: experts
            private readonly double[] val;     // [m, w] their reduced scores
            private readonly int[] len;        // [m] entries held
            private readonly double[] outside; // [m] an upper bound on the reduced score of every expert outside the list
            private readonly ulong[] inTop;    // [m, words] bit x: x is among the token's first k
            private readonly ulong[] inList;   // [m, words] bit x: x is in the token's list
            private readonly int[] wanted;     // [E] tokens whose first k hold x
            private readonly double[] threshold;
            private double[]? column;          // [E, m] the scores by expert, so that a price step reads them in order
            private bool isRanked;             // the lists hold rankings (Run ranked them)

            /// <summary>Token j's first experts and reduced scores under the current prices (as many as the spans hold, at most
            /// k + 1), when the lists are ranked; false otherwise.</summary>
            public bool Prefix(int j, Span<int> experts, Span<double> values)
            {
                if (!isRanked)
                {
                    return false;
                }
                idx.AsSpan(j * w, experts.Length).CopyTo(experts);
                val.AsSpan(j * w, values.Length).CopyTo(values);
                return true;
            }

            public PriceSweeps(State state, int[] tokens, int[] capacity)
            {
                st = state;
                tokensUsed = tokens;
                this.capacity = capacity;
                m = tokens.Length;
                full = st.e;
                w = Math.Min(st.k + 1 + Slack, st.e);
                words = (st.e + 63) / 64;
                idx = new int[m * w];
                val = new double[m * w];
                len = new int[m];
                outside = new double[m];
                inTop = new ulong[m * words];
                inList = new ulong[m * words];
                wanted = new int[st.e];
                threshold = new double[m];
            }

            /// <summary>The scores of the tokens used by expert (column-major [E, m]), made before the first sweep: the
            /// rankings alone do not need them, and often no sweep is needed.</summary>
            private double[] Columns()
            {
                if (column is not null)
                {
                    return column;
                }
                column = new double[st.e * m];
                const int block = 64;
                for (int j0 = 0; j0 < m; j0 += block)
                {
                    for (int j = j0; j < Math.Min(m, j0 + block); j++)
                    {
                        int row = tokensUsed[j] * st.e;
                        for (int x = 0; x < st.e; x++)
                        {
                            column[x * m + j] = st.s[row + x];
                        }
                    }
                }
                return column;
            }

            /// <summary>Sweeps until the tokens over capacity are at most <paramref name="enough"/> (then shortest paths are the
            /// cheaper way to place them) or <paramref name="maxSweeps"/> are done. Returns the sweeps done.</summary>
            public int Run(int maxSweeps, long enough)
            {
                if (m <= capacity.Min())
                {
                    return 0;
                }
                isRanked = true;
                for (int j = 0; j < m; j++)
                {
                    Rank(j);
                }
                int k = st.k, e = st.e;
                int[] listedTokens = new int[m];
                int sweep = 0;
                while (sweep < maxSweeps && Excess() > enough)
                {
                    sweep++;
                    var column = Columns();
                    for (int x = 0; x < e; x++)
                    {
                        double old = st.lambda[x];
                        if (old == 0 && wanted[x] <= capacity[x])
                        {
                            continue; // an unpriced expert that at most C tokens want keeps price 0
                        }
                        // t_j = S_jx - (the k-th best reduced score among experts other than x): token j keeps x iff lambda_x < t_j.
                        // When more than C tokens want x the new price is above the old one, and only they can set it.
                        bool onlyWanting = wanted[x] > capacity[x];
                        int count = 0, listedCount = 0, word = x >> 6;
                        ulong bit = 1UL << (x & 63);
                        for (int j = 0; j < m; j++)
                        {
                            if ((inList[j * words + word] & bit) != 0)
                            {
                                listedTokens[listedCount++] = j;
                            }
                            bool top = (inTop[j * words + word] & bit) != 0;
                            if (onlyWanting && !top)
                            {
                                continue;
                            }
                            threshold[count++] = column[x * m + j] - val[j * w + (top ? k : k - 1)];
                        }
                        double t = NthLargest(threshold.AsSpan(0, count), capacity[x]); // the (C+1)-th largest
                        double price = double.IsFinite(t) ? Math.Max(0.0, t) : 0.0;
                        if (price == old)
                        {
                            continue;
                        }
                        st.lambda[x] = price;
                        if (price > old)
                        {
                            // x's reduced score fell: only the lists holding x change.
                            for (int q = 0; q < listedCount; q++)
                            {
                                int j = listedTokens[q];
                                Update(j, x, column[x * m + j] - price, listed: true, rose: false);
                            }
                            continue;
                        }
                        for (int j = 0; j < m; j++)
                        {
                            bool listed = (inList[j * words + word] & bit) != 0;
                            double value = column[x * m + j] - price;
                            int last = j * w + len[j] - 1;
                            if (listed || RanksBefore(value, x, val[last], idx[last]))
                            {
                                Update(j, x, value, listed, rose: true);
                            }
                            else
                            {
                                outside[j] = Math.Max(outside[j], value); // x stays outside with a higher score
                            }
                        }
                    }
                }
                return sweep;
            }

            /// <summary>Tokens over capacity under the current prices: sum over x of max(0, wanted_x - C).</summary>
            private long Excess()
            {
                long total = 0;
                for (int x = 0; x < wanted.Length; x++)
                {
                    total += Math.Max(0, wanted[x] - capacity[x]);
                }
                return total;
            }

            /// <summary>Expert x's reduced score for token j changed to <paramref name="value"/>: keeps the list an exact prefix of
            /// the ranking (x moves within it, enters it, or drops off the end of an incomplete list when its score fell, since an
            /// expert outside might rank before it), then the bit sets; ranks again from the scores when fewer than k + 1 entries are left.</summary>
            private void Update(int j, int x, double value, bool listed, bool rose)
            {
                int b = j * w, n = len[j], k = st.k, p = -1;
                bool complete = n == full;
                if (listed)
                {
                    p = 0;
                    while (idx[b + p] != x)
                    {
                        p++;
                    }
                    for (int q = p; q + 1 < n; q++)
                    {
                        idx[b + q] = idx[b + q + 1];
                        val[b + q] = val[b + q + 1];
                    }
                    n--;
                }
                int at = 0;
                while (at < n && RanksBefore(val[b + at], idx[b + at], value, x))
                {
                    at++;
                }
                // Past the end x stays when nothing outside can rank before it: the list was complete, x's score rose, or its
                // score is still above the bound on every outside expert.
                bool keep = at < n || complete || (listed && rose) || value > outside[j];
                if (!keep)
                {
                    outside[j] = Math.Max(outside[j], value);
                }
                int evicted = -1;
                if (keep)
                {
                    if (n == w)
                    {
                        n--; // the last entry leaves; everything outside still ranks after the new last
                        evicted = idx[b + n];
                        outside[j] = Math.Max(outside[j], val[b + n]);
                    }
                    for (int q = n; q > at; q--)
                    {
                        idx[b + q] = idx[b + q - 1];
                        val[b + q] = val[b + q - 1];
                    }
                    idx[b + at] = x;
                    val[b + at] = value;
                    n++;
                }
                len[j] = n;
                if (n < Math.Min(k + 1, full))
                {
                    Rank(j);
                    return;
                }
                // The first k change by at most one swap: x leaves (the old (k+1)-th enters) or x enters (the old k-th leaves).
                if (listed != keep)
                {
                    Flip(inList, j, x);
                }
                if (evicted >= 0)
                {
                    Flip(inList, j, evicted);
                }
                bool wasTop = listed && p < k, isTop = keep && at < k;
                if (wasTop != isTop)
                {
                    int other = idx[b + (wasTop ? k - 1 : k)];
                    Flip(inTop, j, x);
                    Flip(inTop, j, other);
                    wanted[x] += isTop ? 1 : -1;
                    wanted[other] += isTop ? -1 : 1;
                }
            }

            private void Flip(ulong[] bits, int j, int x) => bits[j * words + (x >> 6)] ^= 1UL << (x & 63);

            private static bool RanksBefore(double v, int x, double u, int y) => v > u || (v == u && x < y);

            /// <summary>Ranks token j's list from the scores.</summary>
            private void Rank(int j)
            {
                len[j] = st.RankRow(tokensUsed[j], idx.AsSpan(j * w, w), val.AsSpan(j * w, w), out outside[j]);
                Bits(j);
            }

            /// <summary>Recomputes token j's bit sets from its list and keeps <see cref="wanted"/> in step.</summary>
            private void Bits(int j)
            {
                int b = j * w, wb = j * words, k = st.k;
                for (int q = 0; q < words; q++)
                {
                    ulong was = inTop[wb + q];
                    for (ulong gone = was; gone != 0; gone &= gone - 1)
                    {
                        wanted[q * 64 + BitOperations.TrailingZeroCount(gone)]--;
                    }
                    inTop[wb + q] = 0;
                    inList[wb + q] = 0;
                }
                for (int q = 0; q < len[j]; q++)
                {
                    int x = idx[b + q];
                    inList[wb + (x >> 6)] |= 1UL << (x & 63);
                    if (q < k)
                    {
                        inTop[wb + (x >> 6)] |= 1UL << (x & 63);
                        wanted[x]++;
                    }
                }
            }
        }

        /// <summary>The (rank+1)-th largest value (rank 0 = the maximum) by quickselect; reorders the span.</summary>
        private static double NthLargest(Span<double> a, int rank)
        {
            if (rank >= a.Length)
            {
                return double.NegativeInfinity;
            }
            int lo = 0, hi = a.Length - 1;
            while (lo < hi)
            {
                double pivot = a[(lo + hi) >>> 1];
                int i = lo, j = hi;
                while (i <= j)
                {
                    while (a[i] > pivot) i++;
                    while (a[j] < pivot) j--;
                    if (i <= j)
                    {
                        (a[i], a[j]) = (a[j], a[i]);
                        i++;
                        j--;
                    }
                }
                if (rank <= j) hi = j;
                else if (rank >= i) lo = i;
                else break;
            }
            return a[rank];
        }
    }
}
