using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Reference.Kernels.Routing;

/// <summary>The result of the fast exact MaxScore solver.</summary>
/// <param name="Experts">[N * k] row-major [N, k]: each token's experts by descending score (ties to the lower index), -1 padding after them when C * E &lt; k * N.</param>
/// <param name="Load">[E]: tokens per expert.</param>
/// <param name="Objective">The total score of the routing, computed exactly and rounded once to double (as the reference
/// <c>Reference.Routing.MaxScore.Route</c> reports it, so both give the identical double for the same optimum).</param>
/// <param name="Prices">[E]: the certificate's prices lambda, rounded to double from the exact rational potentials.</param>
/// <param name="Sweeps">Price sweeps of phase 1 over all tokens.</param>
/// <param name="Augmentations">Shortest-path augmentations of phase 2.</param>
/// <param name="CyclesCanceled">Negative cycles found and canceled by the exact finish (usually 0).</param>
public sealed record MaxScoreFastResult(int[] Experts, int[] Load, double Objective, double[] Prices, int Sweeps, int Augmentations, int CyclesCanceled)
{
    /// <summary>True when the exact finish computed in BigInteger because the scores' binary range (largest over smallest
    /// nonzero |score|) was too wide for Int128 to hold every exact sum provably; false when Int128 sufficed.</summary>
    public bool WideFinish { get; init; }
}

/// <summary>
/// A fast exact MaxScore solver for the case C*E &gt;= k*N (every token gets k distinct experts, loads at most C), exploiting
/// few experts and many tokens: (1) prices found approximately by coordinate steps on the dual, (2) the top-k assignment under
/// those prices repaired by successive shortest paths on the E-node contracted residual graph, (3) an exact finish: the
/// contracted graph's edge weights are computed exactly (doubles as integers at a common binary scale) and exact Bellman-Ford
/// either finds a negative cycle, which is canceled, or certifies optimality with exact prices.
/// See proofs/maxscore.md for why the contraction and the certificate are exact.
/// </summary>
public static class MaxScoreSolver
{
    /// <summary>The most phase-1 sweeps over all tokens (a sweep steps every expert's price once); it stops earlier once
    /// few tokens are over capacity.</summary>
    public const int DefaultSweeps = 8;

    /// <summary>Solves exactly: among the maximum flows, one of largest total score (proofs/maxscore.md, Definition: Exact routing), in every
    /// capacity regime.</summary>
    /// <param name="scores">S, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <param name="capacity">C &gt;= 0. With C * E &lt; k * N every expert ends full and tokens get fewer than k experts.</param>
    /// <param name="sweeps">The most phase-1 sweeps over all tokens (0 disables phase 1; the result is exact either way).</param>
    /// <returns>The optimal routing (rows padded with -1 when C * E &lt; k * N) and its certificate prices.</returns>
    /// <exception cref="ArgumentException">Bad shapes, k out of range, a negative capacity, or non-finite scores.</exception>
    /// <remarks>
    /// C * E &lt; k * N is reduced to the full case: k stand-in experts for an empty slot, each of capacity N, with one score D
    /// for every token, low enough that a maximum flow of the real network is always worth more than any routing that leaves
    /// it short (D &lt; min S - (E - 1)(max S - min S); proofs/maxscore.md, theorem maxscore.fast-solver-short). Stand-ins
    /// are reported as -1. Their price is 0 (never full but at C = 0), so the threshold of the certificate is D; the real prices
    /// are returned less their minimum (every real expert is full, so a common shift certifies as well).
    /// </remarks>
    public static MaxScoreFastResult Solve(double[] scores, int tokens, int experts, int k, int capacity, int sweeps = DefaultSweeps)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (tokens < 0 || experts < 1 || (long)tokens * experts != scores.LongLength)
        {
            throw new ArgumentException($"scores has {scores.Length} elements, not N * E = {tokens} * {experts}", nameof(scores));
        }
        Guard.InRange(k, 1, experts, nameof(k));
        if (capacity < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"capacity C = {capacity} must be >= 0");
        }
        for (int i = 0; i < scores.Length; i++)
        {
            if (!double.IsFinite(scores[i]))
            {
                throw new ArgumentException($"scores[{i / experts}, {i % experts}] is {Guard.Describe(scores[i])}; scores must be finite", nameof(scores));
            }
        }
        if ((long)capacity * experts >= (long)k * tokens)
        {
            return Run(scores, tokens, experts, k, Enumerable.Repeat(capacity, experts).ToArray(), experts, sweeps);
        }

        // Short of capacity: k stand-ins of score D and capacity N.
        double low = scores.Length == 0 ? 0 : scores.Min(), high = scores.Length == 0 ? 0 : scores.Max();
        double bound = Math.Abs(low) + experts * (high - low) + 1; // D = -2^p <= -bound < min S - (E - 1)(max S - min S)
        double d = -Math.ScaleB(1.0, Math.ILogB(bound) + 1);
        int wide = experts + k;
        var padded = new double[tokens * wide];
        for (int i = 0; i < tokens; i++)
        {
            Array.Copy(scores, i * experts, padded, i * wide, experts);
            Array.Fill(padded, d, i * wide + experts, k);
        }
        var caps = new int[wide];
        Array.Fill(caps, capacity, 0, experts);
        Array.Fill(caps, tokens, experts, k);
        var r = Run(padded, tokens, wide, k, caps, experts, sweeps);
        var prices = r.Prices[..experts];
        double shift = prices.Length == 0 ? 0 : prices.Min();
        return r with { Load = r.Load[..experts], Prices = prices.Select(p => p - shift).ToArray() };
    }

    private static MaxScoreFastResult Run(double[] scores, int tokens, int experts, int k, int[] capacity, int real, int sweeps)
    {
        var state = new State(scores, tokens, experts, k, capacity, real);
        int done = state.ApproximatePrices(sweeps);
        state.AssignTopK();
        int augmentations = state.RouteExcess();
        int cycles = state.FinishExactly();
        return state.Result(done, augmentations, cycles);
    }

    /// <summary>The solver's mutable state.</summary>
    private sealed class State
    {
        private readonly double[] s;          // [N, E] scores
        private readonly int n, e, k;
        private readonly int[] cap;           // [E] capacities (C for a real expert; N for a stand-in for an empty slot)
        private readonly int real;            // experts below this index are real; the rest are stand-ins, reported as -1
        private readonly double[] lambda;     // [E] prices
        private readonly bool[] member;       // [N, E] chosen
        private readonly ulong[] memberBits;  // [N] bit x: token i is on x (only when E <= 64; empty otherwise)
        private readonly int[] load;          // [E]
        private readonly List<int>[] holders; // [E] tokens on each expert
        private readonly int[] slot;          // [N, E] position of token i in holders[e], or -1
        private readonly double[] best;       // [E, E] min over tokens on a, not on b, of S_ia - S_ib (rounded)
        private readonly int[] bestToken;     // [E, E] the token attaining it (ties to the lower token), or -1
        // Per pair, the few best tokens (key ascending, ties to the lower token), so that a leaving best token is replaced
        // without rescanning the expert's holders. Unlisted eligible tokens have keys >= the last listed one when the
        // list is truncated; an untruncated list holds every eligible token.
        private const int Listed = 4;
        private readonly double[] candKey;    // [E, E, Listed]
        private readonly int[] candTok;       // [E, E, Listed]
        private readonly int[] candCount;     // [E, E]
        private readonly bool[] truncated;    // [E, E]
        private PriceSweeps? ranked;          // phase 1 over all tokens (token j = token i), when it ran

        public State(double[] scores, int tokens, int experts, int k, int[] capacity, int real)
        {
            s = scores;
            n = tokens;
            e = experts;
            this.k = k;
            cap = capacity;
            this.real = real;
            lambda = new double[e];
            member = new bool[n * e];
            memberBits = new ulong[e <= 64 ? n : 0];
            load = new int[e];
            holders = new List<int>[e];
            for (int x = 0; x < e; x++)
            {
                holders[x] = new List<int>();
            }
            slot = new int[n * e];
            Array.Fill(slot, -1);
            best = new double[e * e];
            bestToken = new int[e * e];
            candKey = new double[e * e * Listed];
            candTok = new int[e * e * Listed];
            candCount = new int[e * e];
            truncated = new bool[e * e];
        }

        // ----- phase 1: approximate prices ---------------------------------------------------------------------------------

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

        /// <summary>The indices and reduced scores of a token's best min(idx.Length, E) experts (descending, ties to the
        /// lower index); returns how many; unused tail entries get -Inf and -1.</summary>
        private int RankRow(int i, Span<int> idx, Span<double> val) => RankRow(i, idx, val, out _);

        /// <summary><see cref="RankRow(int, Span{int}, Span{double})"/>, also giving the largest reduced score left out
        /// (-Inf when none is).</summary>
        private int RankRow(int i, Span<int> idx, Span<double> val, out double rest)
        {
            ReadOnlySpan<double> row = s.AsSpan(i * e, e);
            return RowRanking.Rank(row, lambda, idx, val, out rest);
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

        // ----- phase 2: assignment and excess routing ----------------------------------------------------------------------

        /// <summary>Assigns every token the top-k of its reduced scores (ties to the lower index).</summary>
        /// <remarks>When phase 1 swept all tokens, their ranked lists are exact prefixes of the rankings under the final prices,
        /// so their first k entries are read instead of ranking again.</remarks>
        public void AssignTopK()
        {
            int m = Math.Min(k + 1, e); // the (k+1)-th shows a tie at the boundary
            Span<int> idx = stackalloc int[m];
            Span<double> val = stackalloc double[m];
            var tied = new List<(int Token, double Boundary)>();
            for (int i = 0; i < n; i++)
            {
                if (ranked is null || !ranked.Prefix(i, idx, val))
                {
                    RankRow(i, idx, val);
                }
                if (m > k && val[k] == val[k - 1])
                {
                    tied.Add((i, val[k - 1])); // placed once the untied tokens show where room is left
                    continue;
                }
                for (int q = 0; q < k; q++)
                {
                    Add(i, idx[q]);
                }
            }
            foreach (var (i, boundary) in tied)
            {
                AssignTied(i, boundary);
            }
        }

        /// <summary>
        /// A token whose k-th and (k+1)-th reduced scores tie: every expert above the tied value, then the tied ones ranked by
        /// <see cref="Need"/> (ties to the lower index). Any choice among tied experts is a top k, so the prices still certify
        /// it; choosing by room keeps ties (scores on a grid) from piling onto the lowest indices or into the stand-ins.
        /// </summary>
        private void AssignTied(int i, double boundary)
        {
            int taken = 0;
            for (int x = 0; x < e; x++)
            {
                if (s[i * e + x] - lambda[x] > boundary)
                {
                    Add(i, x);
                    taken++;
                }
            }
            for (; taken < k; taken++)
            {
                int pick = -1;
                for (int x = 0; x < e; x++)
                {
                    if (!member[i * e + x] && s[i * e + x] - lambda[x] == boundary && (pick < 0 || Need(x) > Need(pick)))
                    {
                        pick = x;
                    }
                }
                Add(i, pick);
            }
        }

        /// <summary>How much a tied token is wanted on x: a real expert's room ranks first (short of capacity every real expert
        /// ends full); a stand-in's room (never full) after it; a full expert last, by how full.</summary>
        private long Need(int x)
        {
            long room = cap[x] - load[x];
            return room <= 0 ? room - 2L * n : x < real ? room + 2L * n : room;
        }

        private void Add(int i, int x)
        {
            member[i * e + x] = true;
            if (memberBits.Length > 0)
            {
                memberBits[i] |= 1UL << x;
            }
            slot[i * e + x] = holders[x].Count;
            holders[x].Add(i);
            load[x]++;
        }

        private void Remove(int i, int x)
        {
            member[i * e + x] = false;
            if (memberBits.Length > 0)
            {
                memberBits[i] &= ~(1UL << x);
            }
            var list = holders[x];
            int at = slot[i * e + x], last = list[^1];
            list[at] = last;
            slot[last * e + x] = at;
            list.RemoveAt(list.Count - 1);
            slot[i * e + x] = -1;
            load[x]--;
        }

        /// <summary>
        /// Makes the routing a maximum flow of least cost by successive shortest paths on the contracted graph: nodes are the
        /// experts and the sink z; a token's move from u to v is an arc of cost S_iu - S_iv (the pair lists keep the cheapest);
        /// u -&gt; z carries the flow f_u &lt;= C into the sink and z -&gt; u takes it back. Potentials phi (phi(u) = -lambda_u,
        /// phi(z) = 0 at the start) keep every reduced cost &gt;= 0: token moves because every token holds a top k of
        /// S_i - lambda, and the sink arcs because f_u = C wherever lambda_u &gt; 0 (a priced expert below C is a deficit of
        /// C - load, and z holds the difference). Each round runs Dijkstra from every node with excess to the nearest node
        /// with a deficit, moves one unit along the path and updates phi. Returns the augmentations.
        /// </summary>
        public int RouteExcess()
        {
            int augmentations = 0;
            for (int a = 0; a < e; a++)
            {
                RecomputeRow(a);
            }
            int z = e, nodes = e + 1;
            var phi = new double[nodes];
            var flow = new int[e];               // f_u, the flow u -> z
            long excessZ = -(long)n * k;         // z's inflow minus its demand k N
            for (int a = 0; a < e; a++)
            {
                phi[a] = -lambda[a];
                flow[a] = lambda[a] > 0 ? cap[a] : Math.Min(load[a], cap[a]);
                excessZ += flow[a];
            }
            long Excess(int v) => v == z ? excessZ : load[v] - flow[v];
            int padded = (nodes + 3) & ~3;
            var dist = new double[nodes];
            var pending = new double[padded];   // dist of a node not yet settled, +Inf once settled (and in the padding)
            var parent = new int[nodes];
            var path = new int[nodes];

            // Every arc of the path (target first) has reduced cost 0 and room for one more unit.
            bool Tight(ReadOnlySpan<int> nodesOnPath)
            {
                for (int q = 0; q + 1 < nodesOnPath.Length; q++)
                {
                    int v = nodesOnPath[q], u = nodesOnPath[q + 1];
                    bool room = u == z ? flow[v] > 0 : v == z ? flow[u] < cap[u] : bestToken[u * e + v] >= 0;
                    double cost = u == z || v == z ? 0.0 : best[u * e + v];
                    if (!room || cost + phi[u] - phi[v] > 0)
                    {
                        return false;
                    }
                }
                return true;
            }
            // Relaxes the arc u -> v of the given cost. A settled v is never improved: its distance is at most u's, and
            // u's plus a clipped reduced cost (>= 0) is at least u's, so no test of settledness is needed.
            void Relax(int u, int v, double cost, double from)
            {
                double through = from + Math.Max(0.0, cost + phi[u] - phi[v]);
                if (through < dist[v])
                {
                    dist[v] = through;
                    pending[v] = through;
                    parent[v] = u;
                }
            }
            while (true)
            {
                bool any = false;
                for (int v = 0; v < nodes; v++)
                {
                    dist[v] = Excess(v) > 0 ? 0 : double.PositiveInfinity;
                    any |= Excess(v) > 0;
                    parent[v] = -1;
                }
                if (!any)
                {
                    break;
                }
                dist.CopyTo(pending, 0);
                pending.AsSpan(nodes).Fill(double.PositiveInfinity);
                // Dijkstra (dense: the graph is small and complete) until the first node with a deficit is settled.
                int target = -1;
                for (int step = 0; step < nodes; step++)
                {
                    int u = Nearest(pending);
                    if (u < 0)
                    {
                        break;
                    }
                    double nearest = dist[u];
                    pending[u] = double.PositiveInfinity;
                    if (Excess(u) < 0)
                    {
                        target = u;
                        break;
                    }
                    // Reduced costs are never below 0 in exact arithmetic; rounding is clipped. Arc costs: from z, 0 to an
                    // expert with flow into z; into z, 0 from an expert with room under C; a token move, its pair's best key.
                    if (u == z)
                    {
                        for (int v = 0; v < e; v++)
                        {
                            if (flow[v] > 0)
                            {
                                Relax(z, v, 0.0, nearest);
                            }
                        }
                        continue;
                    }
                    if (flow[u] < cap[u])
                    {
                        Relax(u, z, 0.0, nearest);
                    }
                    int row = u * e, x = 0;
                    if (Vector256.IsHardwareAccelerated)
                    {
                        var from = Vector256.Create(nearest);
                        var shift = Vector256.Create(phi[u]);
                        for (; x + 4 <= e; x += 4)
                        {
                            var reducedCost = Vector256.Create(best.AsSpan(row + x, 4)) + shift - Vector256.Create(phi.AsSpan(x, 4));
                            var through = from + Vector256.Max(Vector256<double>.Zero, reducedCost);
                            var known = Vector256.Create(dist.AsSpan(x, 4));
                            var better = Vector256.LessThan(through, known);
                            uint bits = better.ExtractMostSignificantBits();
                            if (bits == 0)
                            {
                                continue;
                            }
                            Vector256.ConditionalSelect(better, through, known).CopyTo(dist.AsSpan(x, 4));
                            Vector256.ConditionalSelect(better, through, Vector256.Create(pending.AsSpan(x, 4))).CopyTo(pending.AsSpan(x, 4));
                            for (; bits != 0; bits &= bits - 1)
                            {
                                parent[x + BitOperations.TrailingZeroCount(bits)] = u;
                            }
                        }
                    }
                    for (; x < e; x++)
                    {
                        Relax(u, x, best[row + x], nearest);
                    }
                }
                if (target < 0)
                {
                    throw new InvalidOperationException("no deficit is reachable from an excess; C * E >= k * N guarantees one");
                }
                double reach = dist[target];
                for (int v = 0; v < nodes; v++)
                {
                    phi[v] += Math.Min(dist[v], reach);
                }
                // Augment: walk the path back; a token arc moves its token, a sink arc changes f. While the same path stays
                // tight (reduced cost 0 on every arc: ties, e.g. scores on a grid) and its ends still hold excess and deficit,
                // it is still a shortest path, so the next unit follows it without another Dijkstra.
                int length = 0;
                for (int v = target; v >= 0; v = parent[v])
                {
                    path[length++] = v; // target first, source last
                }
                do
                {
                    for (int q = 0; q + 1 < length; q++)
                    {
                        int v = path[q], u = path[q + 1];
                        if (u == z)
                        {
                            flow[v]--;
                            excessZ--;
                        }
                        else if (v == z)
                        {
                            flow[u]++;
                            excessZ++;
                        }
                        else
                        {
                            Move(bestToken[u * e + v], u, v);
                        }
                    }
                    augmentations++;
                }
                while (Excess(path[length - 1]) > 0 && Excess(target) < 0 && Tight(path.AsSpan(0, length)));
            }
            for (int a = 0; a < e; a++)
            {
                lambda[a] = phi[z] - phi[a];
            }
            return augmentations;
        }

        /// <summary>The index of the smallest value (the lowest index among equal ones), or -1 when all are +Inf; the length is
        /// a multiple of 4.</summary>
        private static int Nearest(double[] values)
        {
            int u = -1;
            double nearest = double.PositiveInfinity;
            if (Vector256.IsHardwareAccelerated)
            {
                var least = Vector256.Create(values.AsSpan(0, 4));
                for (int x = 4; x < values.Length; x += 4)
                {
                    least = Vector256.Min(least, Vector256.Create(values.AsSpan(x, 4)));
                }
                nearest = Math.Min(Math.Min(least[0], least[1]), Math.Min(least[2], least[3]));
                if (nearest == double.PositiveInfinity)
                {
                    return -1;
                }
                var wanted = Vector256.Create(nearest);
                for (int x = 0; ; x += 4)
                {
                    uint bits = Vector256.Equals(Vector256.Create(values.AsSpan(x, 4)), wanted).ExtractMostSignificantBits();
                    if (bits != 0)
                    {
                        return x + BitOperations.TrailingZeroCount(bits);
                    }
                }
            }
            for (int v = 0; v < values.Length; v++)
            {
                if (values[v] < nearest)
                {
                    u = v;
                    nearest = values[v];
                }
            }
            return u;
        }

        /// <summary>Moves token t from expert u to expert v and repairs the pair minima that the move touches:
        /// row u loses t (entries whose best token was t are rescanned), row v gains t, and for the token's other experts x
        /// the entry (x, u) gains t while the entry (x, v) loses it.</summary>
        private void Move(int t, int u, int v)
        {
            Remove(t, u);
            Add(t, v);
            int row = t * e;
            for (int b = 0; b < e; b++)
            {
                Drop(u, b, t); // t left u
            }
            for (int x = 0; x < e; x++)
            {
                if (!member[row + x])
                {
                    continue;
                }
                if (x == v)
                {
                    // Row v gains t for every expert t is not on (u among them).
                    for (int b = 0; b < e; b++)
                    {
                        if (!member[row + b])
                        {
                            Offer(v, b, t);
                        }
                    }
                    continue;
                }
                Offer(x, u, t); // u is now a target for t
                Drop(x, v, t);  // v no longer is
            }
        }

        /// <summary>Token t became eligible for the pair (a, b): list it if it ranks among the pair's best.</summary>
        private void Offer(int a, int b, int t)
        {
            int at = a * e + b, basis = at * Listed, count = candCount[at];
            double key = s[t * e + a] - s[t * e + b];
            if (count > 0)
            {
                int last = basis + count - 1;
                bool beforeLast = key < candKey[last] || (key == candKey[last] && t < candTok[last]);
                if (!beforeLast && (count == Listed || truncated[at]))
                {
                    truncated[at] |= count == Listed;
                    return; // ranks after every listed token: stays unlisted
                }
            }
            if (count == Listed)
            {
                count--; // drop the last to make room
                truncated[at] = true;
            }
            int pos = basis + count;
            while (pos > basis && (key < candKey[pos - 1] || (key == candKey[pos - 1] && t < candTok[pos - 1])))
            {
                candKey[pos] = candKey[pos - 1];
                candTok[pos] = candTok[pos - 1];
                pos--;
            }
            candKey[pos] = key;
            candTok[pos] = t;
            candCount[at] = count + 1;
            if (pos == basis)
            {
                Sync(at); // a new best
            }
        }

        /// <summary>Token t stopped being eligible for the pair (a, b): unlist it; rescan when a truncated list runs dry.</summary>
        private void Drop(int a, int b, int t)
        {
            int at = a * e + b, basis = at * Listed, count = candCount[at];
            int p = -1;
            for (int q = 0; q < count; q++)
            {
                if (candTok[basis + q] == t)
                {
                    p = q;
                    break;
                }
            }
            if (p < 0)
            {
                return;
            }
            for (int q = p; q + 1 < count; q++)
            {
                candKey[basis + q] = candKey[basis + q + 1];
                candTok[basis + q] = candTok[basis + q + 1];
            }
            candCount[at] = count - 1;
            if (count - 1 == 0 && truncated[at])
            {
                RecomputeEntry(a, b);
                return;
            }
            if (p == 0)
            {
                Sync(at); // the best left
            }
        }

        private void Sync(int at)
        {
            bool any = candCount[at] > 0;
            best[at] = any ? candKey[at * Listed] : double.PositiveInfinity;
            bestToken[at] = any ? candTok[at * Listed] : -1;
        }

        private void RecomputeEntry(int a, int b)
        {
            int at = a * e + b, last = at * Listed + Listed - 1;
            candCount[at] = 0;
            truncated[at] = false;
            Sync(at);
            foreach (int i in CollectionsMarshal.AsSpan(holders[a]))
            {
                if (member[i * e + b])
                {
                    continue;
                }
                if (candCount[at] == Listed)
                {
                    // Screen before the call: most holders rank after a full list's last token.
                    double key = s[i * e + a] - s[i * e + b];
                    if (key > candKey[last] || (key == candKey[last] && i > candTok[last]))
                    {
                        truncated[at] = true;
                        continue;
                    }
                }
                Offer(a, b, i);
            }
        }

        /// <summary>Rebuilds the pair lists (a, *): for every b, the best tokens on a and not on b by S_ia - S_ib.</summary>
        private void RecomputeRow(int a)
        {
            for (int b = 0; b < e; b++)
            {
                candCount[a * e + b] = 0;
                truncated[a * e + b] = false;
                Sync(a * e + b);
            }
            if (memberBits.Length > 0)
            {
                RecomputeRowScreened(a);
                return;
            }
            foreach (int i in holders[a])
            {
                int row = i * e;
                for (int b = 0; b < e; b++)
                {
                    if (!member[row + b])
                    {
                        Offer(a, b, i);
                    }
                }
            }
        }

        /// <summary>
        /// <see cref="RecomputeRow"/> for E &lt;= 64: a token is offered to the pairs (a, b) only where its key can enter the
        /// list (key &lt;= the list's last key, or the list is not full), found for all b at once with vector compares; a token
        /// screened out of a full list marks it truncated, as <see cref="Offer"/> would.
        /// </summary>
        private void RecomputeRowScreened(int a)
        {
            Span<double> limit = stackalloc double[e]; // the last key of a full list, else +Inf
            limit.Fill(double.PositiveInfinity);
            ulong fullLists = 0, truncatedLists = 0, all = e == 64 ? ulong.MaxValue : (1UL << e) - 1;
            foreach (int i in holders[a])
            {
                int row = i * e;
                double sa = s[row + a];
                ulong enter = 0;
                int b = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var top = Vector256.Create(sa);
                    for (; b + 4 <= e; b += 4)
                    {
                        var key = top - Vector256.Create(s.AsSpan(row + b, 4));
                        enter |= (ulong)Vector256.LessThanOrEqual(key, Vector256.Create(limit.Slice(b, 4))).ExtractMostSignificantBits() << b;
                    }
                }
                for (; b < e; b++)
                {
                    enter |= sa - s[row + b] <= limit[b] ? 1UL << b : 0;
                }
                ulong eligible = ~memberBits[i] & all;
                truncatedLists |= eligible & ~enter & fullLists;
                for (ulong bits = eligible & enter; bits != 0; bits &= bits - 1)
                {
                    int target = BitOperations.TrailingZeroCount(bits), at = a * e + target;
                    Offer(a, target, i);
                    if (candCount[at] == Listed)
                    {
                        fullLists |= 1UL << target;
                        limit[target] = candKey[at * Listed + Listed - 1];
                    }
                }
            }
            for (ulong bits = truncatedLists; bits != 0; bits &= bits - 1)
            {
                truncated[a * e + BitOperations.TrailingZeroCount(bits)] = true;
            }
        }

        // ----- phase 3: the exact finish --------------------------------------------------------------------------------

        private ExactScores? exact; // the scores as exact integers, made by FinishExactly, used again by Result

        /// <summary>
        /// The exact finish. The scores become integers X at a common binary scale (<see cref="ExactScores"/>), in Int128 when a
        /// bound proves every label and sum below fits (see <see cref="LabelBudget"/>), in BigInteger otherwise; one generic
        /// implementation serves both. Potentials phi (phi(a) = -lambda_a, phi(z) = 0) are snapped to the grid and relaxed by
        /// exact Bellman-Ford over the contracted graph built from the maintained minimal tokens; a negative cycle is canceled
        /// and the loop repeats. With no cycle, every token is checked exactly against the potentials (screened in doubles,
        /// exact when close); a violated pair means that pair's exact minimum was another token, which then enters the graph.
        /// Returns the cycles canceled; sets the prices from the exact potentials.
        /// </summary>
        public int FinishExactly()
        {
            exact = new ExactScores(s);
            int budget = LabelBudget(exact.Bits);
            WideFinish = budget + 3 > ExactScores.Room<Int128>();
            return WideFinish ? FinishExactly<BigInteger>(exact, budget) : FinishExactly<Int128>(exact, budget);
        }

        /// <summary>True when the exact finish needed BigInteger.</summary>
        public bool WideFinish { get; private set; }

        /// <summary>
        /// The bound B on start labels: |phi| &lt;= 2^B with B = bits + 1 + w, where 2^w exceeds (E + 1) * arcs, the most
        /// relaxations Bellman-Ford performs. Arc costs X_ia - X_ib are below 2^(bits+1), so every label stays below
        /// 2^B + 2^B = 2^(B+1), every relaxation sum and phi_a + X_ia below 2^(B+2), and lambda = phi(z) - phi(a) likewise:
        /// the arithmetic fits a signed type holding 2^(B+3).
        /// </summary>
        private int LabelBudget(int bits)
        {
            long relaxations = (long)(e + 1) * (e * e + 2 * e);
            return bits + 1 + (64 - BitOperations.LeadingZeroCount((ulong)relaxations));
        }

        /// <summary>The exact finish in the integer type T, which must hold 2^(budget+3).</summary>
        private int FinishExactly<T>(ExactScores scores, int budget) where T : IBinaryInteger<T>
        {
            var limit = T.One << budget;
            var phi = new T[e + 1];
            for (int a = 0; a < e; a++)
            {
                if (!scores.TrySnap(lambda[a], budget, out T price))
                {
                    Array.Clear(phi); // prices out of the bound: start from zero labels (any labels work)
                    break;
                }
                phi[a] = -price;
            }
            var graph = new ContractedGraph<T>(e + 1, e * e + 2 * e);
            var cachedToken = new int[e * e];      // [E, E] the token whose key is in cachedKey, or -1
            var cachedKey = new T[e * e];          // [E, E] X_ta - X_tb for that token
            var candidate = new int[e * e];        // [E, E] a token found by the check with a smaller key than the arc's, or -1
            var reduced = new double[e];           // [E] scratch for the check: the potentials in doubles
            var chosen = new int[e];               // [E] scratch for the check: a token's experts
            Array.Fill(cachedToken, -1);
            Array.Fill(candidate, -1);
            int canceled = 0;
            while (true)
            {
                graph.Clear();
                for (int a = 0; a < e; a++)
                {
                    for (int b = 0; b < e; b++)
                    {
                        int pair = a * e + b, t = bestToken[pair], o = candidate[pair];
                        T cost = T.Zero;
                        if (t >= 0)
                        {
                            if (cachedToken[pair] != t)
                            {
                                cachedToken[pair] = t;
                                cachedKey[pair] = scores.Of<T>(t * e + a) - scores.Of<T>(t * e + b);
                            }
                            cost = cachedKey[pair];
                        }
                        if (o >= 0 && o != t && member[o * e + a] && !member[o * e + b])
                        {
                            var alt = scores.Of<T>(o * e + a) - scores.Of<T>(o * e + b);
                            if (t < 0 || alt < cost)
                            {
                                cost = alt;
                                t = o;
                            }
                        }
                        if (t >= 0)
                        {
                            graph.AddArc(a, b, cost, t);
                        }
                    }
                    if (load[a] < cap[a])
                    {
                        graph.AddArc(a, e, T.Zero, -1);
                    }
                    if (load[a] > 0)
                    {
                        graph.AddArc(e, a, T.Zero, -1);
                    }
                }
                foreach (var label in phi)
                {
                    if (label > limit || label < -limit)
                    {
                        Array.Clear(phi); // keep the start labels within the budget
                        break;
                    }
                }
                var cycle = graph.FindNegativeCycle(phi);
                if (cycle is not null)
                {
                    ApplyCycle(graph, cycle);
                    Array.Fill(candidate, -1);
                    canceled++;
                    continue;
                }
                if (!FindViolations(scores, phi, candidate, reduced, chosen))
                {
                    for (int a = 0; a < e; a++)
                    {
                        // lambda_a = phi(z) - phi(a); an expert below capacity is priced 0 (complementary slackness; with
                        // load > 0 the arcs a -> z and z -> a force it, with load 0 raising a nonpositive price to 0 keeps
                        // every token's condition, as no token holds a).
                        lambda[a] = load[a] < cap[a] ? 0.0 : scores.ToDouble(phi[e] - phi[a]);
                    }
                    return canceled;
                }
            }
        }

        /// <summary>Moves the tokens of a negative cycle. A token may carry two arcs of the cycle (a -> b, then b -> d),
        /// so each move is applied once its token is on its tail.</summary>
        private void ApplyCycle<T>(ContractedGraph<T> graph, List<int> cycle) where T : IBinaryInteger<T>
        {
            var pending = cycle.Where(arc => graph.Token(arc) >= 0).ToList();
            while (pending.Count > 0)
            {
                int ready = pending.FindIndex(arc => member[graph.Token(arc) * e + graph.From(arc)] && !member[graph.Token(arc) * e + graph.To(arc)]);
                if (ready < 0)
                {
                    throw new InvalidOperationException("a negative cycle whose moves cannot be applied");
                }
                int arc = pending[ready];
                Move(graph.Token(arc), graph.From(arc), graph.To(arc));
                pending.RemoveAt(ready);
            }
        }

        /// <summary>
        /// Checks every token exactly against the potentials: optimality needs min over chosen a of (phi(a) + X_ia) &gt;= max
        /// over unchosen b of (phi(b) + X_ib) (that is phi(b) &lt;= phi(a) + X_ia - X_ib on every token arc). Screened in
        /// doubles: with low the rounded minimum over the chosen experts, a token passes when exactly k of its experts reach
        /// low - margin (the chosen ones always do); a token that fails is decided exactly. A violating token records itself
        /// as the candidate of its worst pair (the arg-min a, arg-max b), keeping the smaller key when two tokens share a
        /// pair. Returns whether any token violated.
        /// </summary>
        private bool FindViolations<T>(ExactScores scores, T[] phi, int[] candidate, double[] p, int[] chosen) where T : IBinaryInteger<T>
        {
            double maxAbs = scores.MaxAbs;
            for (int a = 0; a < e; a++)
            {
                p[a] = scores.ToDouble(phi[a]);
                maxAbs = Math.Max(maxAbs, Math.Abs(p[a]));
            }
            // Each p(a) + S_ia is within 3 u maxAbs of its exact value (p rounded once, then one addition), and rounding
            // low - margin moves the threshold by under 3 u maxAbs: a margin of 16 u maxAbs leaves every passing unchosen
            // expert strictly below the exact minimum. The subnormal term covers the absolute error of rounding p. Near the
            // top of the double range the screen is off (every token exact).
            double margin = 16 * maxAbs * Math.ScaleB(1.0, -53) + Math.ScaleB(1.0, -1070);
            bool screen = maxAbs < double.MaxValue / 16;
            bool found = false;
            for (int i = 0; i < n; i++)
            {
                int row = i * e;
                if (screen && Passes(chosen.AsSpan(0, Chosen(i, chosen)), s.AsSpan(row, e), p, margin))
                {
                    continue;
                }
                int worstA = -1, worstB = -1;
                T lowExact = T.Zero, highExact = T.Zero;
                for (int x = 0; x < e; x++)
                {
                    var v = phi[x] + scores.Of<T>(row + x);
                    if (member[row + x])
                    {
                        if (worstA < 0 || v < lowExact)
                        {
                            worstA = x;
                            lowExact = v;
                        }
                    }
                    else if (worstB < 0 || v > highExact)
                    {
                        worstB = x;
                        highExact = v;
                    }
                }
                if (worstA < 0 || worstB < 0 || lowExact >= highExact)
                {
                    continue;
                }
                int pair = worstA * e + worstB, held = candidate[pair];
                if (held < 0 || !member[held * e + worstA] || member[held * e + worstB] ||
                    scores.Of<T>(row + worstA) - scores.Of<T>(row + worstB) < scores.Of<T>(held * e + worstA) - scores.Of<T>(held * e + worstB))
                {
                    candidate[pair] = i;
                }
                found = true;
            }
            return found;
        }

        /// <summary>The screen for one token: with low = min over its chosen experts x of p_x + S_x, whether exactly
        /// k experts have p_x + S_x &gt;= low - margin (the chosen ones always do; the count runs over whole vectors).</summary>
        private bool Passes(ReadOnlySpan<int> chosen, ReadOnlySpan<double> scores, double[] p, double margin)
        {
            double low = double.PositiveInfinity;
            foreach (int x in chosen)
            {
                double v = p[x] + scores[x];
                low = v < low ? v : low;
            }
            double threshold = low - margin;
            var bar = new Vector<double>(threshold);
            var reach = Vector<long>.Zero;
            int count = 0, y = 0;
            for (; y + Vector<double>.Count <= e; y += Vector<double>.Count)
            {
                var v = new Vector<double>(p.AsSpan(y, Vector<double>.Count)) + new Vector<double>(scores.Slice(y, Vector<double>.Count));
                reach -= Vector.GreaterThanOrEqual(v, bar);
            }
            for (; y < e; y++)
            {
                count += p[y] + scores[y] >= threshold ? 1 : 0;
            }
            return count + Vector.Sum(reach) == k;
        }

        /// <summary>Writes token i's chosen experts in ascending order into <paramref name="into"/> ([E] room) and returns
        /// how many; reads the member flags 16 at a time as a bit mask.</summary>
        private int Chosen(int i, Span<int> into)
        {
            const int Lanes = 16;
            var flags = System.Runtime.InteropServices.MemoryMarshal.Cast<bool, byte>(member.AsSpan(i * e, e));
            var none = System.Runtime.Intrinsics.Vector128<byte>.Zero;
            int count = 0, x = 0;
            for (; x + Lanes <= e; x += Lanes)
            {
                var block = System.Runtime.Intrinsics.Vector128.Create(flags.Slice(x, Lanes));
                uint bits = ~System.Runtime.Intrinsics.Vector128.ExtractMostSignificantBits(System.Runtime.Intrinsics.Vector128.Equals(block, none)) & 0xFFFFu;
                for (; bits != 0; bits &= bits - 1)
                {
                    into[count++] = x + BitOperations.TrailingZeroCount(bits);
                }
            }
            for (; x < e; x++)
            {
                if (flags[x] != 0)
                {
                    into[count++] = x;
                }
            }
            return count;
        }

        public MaxScoreFastResult Result(int sweeps, int augmentations, int cycles)
        {
            // The objective exactly, rounded once: N k integers below 2^Bits sum below 2^(Bits + bits of N k).
            exact ??= new ExactScores(s);
            long terms = (long)n * k;
            bool narrow = exact.Bits + (64 - BitOperations.LeadingZeroCount((ulong)terms)) < ExactScores.Room<Int128>();
            var experts = new int[n * k];
            double objective = narrow ? Rows<Int128>(exact, experts) : Rows<BigInteger>(exact, experts);
            return new MaxScoreFastResult(experts, (int[])load.Clone(), objective, (double[])lambda.Clone(), sweeps, augmentations, cycles)
            {
                WideFinish = WideFinish,
            };
        }

        /// <summary>Writes each token's experts by descending score (ties to the lower index) into experts [N, k] and returns
        /// the routing's total score, exact in T and rounded once to double.</summary>
        private double Rows<T>(ExactScores scores, int[] experts) where T : IBinaryInteger<T>
        {
            var total = new ExactTotal<T>(scores);
            Span<int> row = e <= 256 ? stackalloc int[e] : new int[e];
            for (int i = 0; i < n; i++)
            {
                Chosen(i, row);
                // Descending score, ties to the lower index (insertion sort on k entries).
                for (int a = 1; a < k; a++)
                {
                    int v = row[a], b = a - 1;
                    while (b >= 0 && s[i * e + row[b]] < s[i * e + v])
                    {
                        row[b + 1] = row[b];
                        b--;
                    }
                    row[b + 1] = v;
                }
                for (int j = 0; j < k; j++)
                {
                    bool standIn = row[j] >= real; // lowest score, so last in the row
                    experts[i * k + j] = standIn ? -1 : row[j];
                    if (!standIn)
                    {
                        total.Add(i * e + row[j]);
                    }
                }
            }
            return scores.ToDouble(total.Value);
        }
    }
}
