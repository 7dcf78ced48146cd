using System.Numerics;

namespace Reference.Kernels.Routing;

/// <summary>The result of the fast exact MaxScore solver.</summary>
/// <param name="Experts">[N * k] row-major [N, k]: each token's experts by descending score (ties to the lower index).</param>
/// <param name="Load">[E]: tokens per expert.</param>
/// <param name="Objective">The total score of the routing, computed exactly and rounded once to double (as the reference
/// <c>Reference.Routing.MaxScore.Route</c> reports it, so both give the identical double for the same optimum).</param>
/// <param name="Prices">[E]: the certificate's prices lambda, rounded to double from the exact rational potentials.</param>
/// <param name="Sweeps">Price sweeps of phase 1.</param>
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
    /// <summary>Phase-1 coordinate sweeps over all experts.</summary>
    public const int DefaultSweeps = 4;

    /// <summary>Solves exactly.</summary>
    /// <param name="scores">S, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <param name="capacity">C, with C * E &gt;= k * N.</param>
    /// <param name="sweeps">Phase-1 sweeps (0 disables phase 1; the result is exact either way).</param>
    /// <returns>The optimal routing and its certificate prices.</returns>
    /// <exception cref="ArgumentException">Bad shapes, k out of range, non-finite scores, or C * E &lt; k * N.</exception>
    public static MaxScoreFastResult Solve(double[] scores, int tokens, int experts, int k, int capacity, int sweeps = DefaultSweeps)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (tokens < 0 || experts < 1 || (long)tokens * experts != scores.LongLength)
        {
            throw new ArgumentException($"scores has {scores.Length} elements, not N * E = {tokens} * {experts}", nameof(scores));
        }
        Guard.InRange(k, 1, experts, nameof(k));
        if (capacity < 0 || (long)capacity * experts < (long)k * tokens)
        {
            throw new ArgumentException(
                $"capacity C = {capacity} with E = {experts} cannot hold k * N = {(long)k * tokens}; this solver needs C * E >= k * N", nameof(capacity));
        }
        for (int i = 0; i < scores.Length; i++)
        {
            if (!double.IsFinite(scores[i]))
            {
                throw new ArgumentException($"scores[{i / experts}, {i % experts}] is {Guard.Describe(scores[i])}; scores must be finite", nameof(scores));
            }
        }
        var state = new State(scores, tokens, experts, k, capacity);
        int done = state.ApproximatePrices(sweeps);
        state.AssignTopK();
        state.ReleaseUnderfullPrices();
        int augmentations = state.RouteExcess();
        var finishWatch = System.Diagnostics.Stopwatch.StartNew(); /*FINISHTIMING*/
        int cycles = state.FinishExactly();
        System.Console.Error.WriteLine($"finish {finishWatch.Elapsed.TotalMilliseconds:F3} ms"); finishWatch.Restart(); /*FINISHTIMING*/
        var resultX = state.Result(done, augmentations, cycles); System.Console.Error.WriteLine($"result {finishWatch.Elapsed.TotalMilliseconds:F3} ms"); /*FINISHTIMING*/
        return state.Result(done, augmentations, cycles);
    }

    /// <summary>The solver's mutable state.</summary>
    private sealed class State
    {
        private readonly double[] s;          // [N, E] scores
        private readonly int n, e, k, c;
        private readonly double[] lambda;     // [E] prices
        private readonly bool[] member;       // [N, E] chosen
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

        public State(double[] scores, int tokens, int experts, int k, int capacity)
        {
            s = scores;
            n = tokens;
            e = experts;
            this.k = k;
            c = capacity;
            lambda = new double[e];
            member = new bool[n * e];
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

        /// <summary>
        /// Gauss-Seidel coordinate steps on the dual, first on a subsample of the tokens (with the capacity scaled down), then
        /// on all tokens: expert x's price becomes the smallest price (at least 0) at which at most C tokens still want x, given
        /// the other prices. Each token keeps its top-(k+1) reduced scores, updated only when x enters or leaves them.
        /// Returns the sweeps done over all tokens.
        /// </summary>
        public int ApproximatePrices(int sweeps)
        {
            if (sweeps <= 0 || n <= c)
            {
                return 0; // with N <= C no expert can overflow: prices stay 0
            }
            int stride = Math.Max(1, n / Math.Max(8 * e, 1024));
            if (stride > 1)
            {
                var sample = Enumerable.Range(0, (n + stride - 1) / stride).Select(j => j * stride).ToArray();
                int sampleCapacity = (int)Math.Ceiling((double)c * sample.Length / n);
                CoordinateSweeps(sample, sampleCapacity, 2 * sweeps);
            }
            CoordinateSweeps(Enumerable.Range(0, n).ToArray(), c, sweeps);
            return sweeps;
        }

        private void CoordinateSweeps(int[] tokensUsed, int capacity, int sweeps)
        {
            int m = tokensUsed.Length, w = k + 1;
            if (m <= capacity)
            {
                return;
            }
            var topIdx = new int[m * w];
            var topVal = new double[m * w];
            var threshold = new double[m];
            // Membership masks (E <= 64): bit x of inTop[j] says x is in token j's top k; of inList[j], in its top k+1.
            bool masks = e <= 64;
            var inTop = new ulong[masks ? m : 0];
            var inList = new ulong[masks ? m : 0];
            var wanted = new int[e]; // tokens (of this set) whose top k holds x
            void Rank(int j)
            {
                int b = j * w;
                if (masks)
                {
                    for (int q = 0; q < k; q++)
                    {
                        wanted[topIdx[b + q]]--;
                    }
                }
                RankRow(tokensUsed[j], topIdx.AsSpan(b, w), topVal.AsSpan(b, w));
                if (masks)
                {
                    ulong top = 0, list = 0;
                    for (int q = 0; q < w; q++)
                    {
                        int x = topIdx[b + q];
                        if (x >= 0)
                        {
                            list |= 1UL << x;
                            if (q < k)
                            {
                                top |= 1UL << x;
                                wanted[x]++;
                            }
                        }
                    }
                    inTop[j] = top;
                    inList[j] = list;
                }
            }
            for (int j = 0; j < m; j++)
            {
                for (int q = 0; q < k; q++)
                {
                    topIdx[j * w + q] = 0; // placeholders, removed from wanted below
                }
            }
            if (masks)
            {
                wanted[0] += m * k; // balance the placeholders' decrements
            }
            for (int j = 0; j < m; j++)
            {
                Rank(j);
            }
            for (int sweep = 0; sweep < sweeps; sweep++)
            {
                for (int x = 0; x < e; x++)
                {
                    // An unpriced expert that at most C tokens want keeps price 0: skip it.
                    if (masks && lambda[x] == 0 && wanted[x] <= capacity)
                    {
                        continue;
                    }
                    // t_i = S_ix - (the k-th best reduced score among experts other than x): token i keeps x iff lambda_x < t_i.
                    // When more than C tokens want x the new price is above the old one, and only those tokens (t_i > lambda_x)
                    // can set it: the others are skipped. Otherwise every token is a candidate.
                    bool onlyWanting = masks && wanted[x] > capacity;
                    int count = 0;
                    for (int j = 0; j < m; j++)
                    {
                        int b = j * w;
                        bool inTopK;
                        if (masks)
                        {
                            inTopK = (inTop[j] & (1UL << x)) != 0;
                            if (onlyWanting && !inTopK)
                            {
                                continue;
                            }
                        }
                        else
                        {
                            inTopK = false;
                            for (int q = 0; q < k; q++)
                            {
                                inTopK |= topIdx[b + q] == x;
                            }
                        }
                        threshold[count++] = s[tokensUsed[j] * e + x] - topVal[b + (inTopK ? k : k - 1)];
                    }
                    double t = NthLargest(threshold.AsSpan(0, count), capacity); // the (C+1)-th largest
                    double price = double.IsFinite(t) ? Math.Max(0.0, t) : 0.0;
                    if (price == lambda[x])
                    {
                        continue;
                    }
                    bool raised = price > lambda[x];
                    lambda[x] = price;
                    // Only tokens whose top-(k+1) list holds x (price raised) or would now admit x (price lowered) change.
                    for (int j = 0; j < m; j++)
                    {
                        int b = j * w, i = tokensUsed[j];
                        bool affected;
                        if (raised)
                        {
                            if (masks)
                            {
                                affected = (inList[j] & (1UL << x)) != 0;
                                if (affected && TryLowerInPlace(topIdx.AsSpan(b, w), topVal.AsSpan(b, w), x, s[i * e + x] - price))
                                {
                                    continue; // x stays in the top k: only its place among them changed
                                }
                            }
                            else
                            {
                                affected = false;
                                for (int q = 0; q < w; q++)
                                {
                                    affected |= topIdx[b + q] == x;
                                }
                            }
                        }
                        else
                        {
                            affected = s[i * e + x] - price >= topVal[b + k];
                        }
                        if (affected)
                        {
                            Rank(j);
                        }
                    }
                }
            }
        }

        /// <summary>
        /// After expert x's reduced score fell to <paramref name="value"/>: when x was in the top k and still ranks above the
        /// (k+1)-th entry, moves it down among the top k in place and returns true; otherwise returns false (rescan the row).
        /// </summary>
        private static bool TryLowerInPlace(Span<int> idx, Span<double> val, int x, double value)
        {
            int kk = idx.Length - 1, p = idx.IndexOf(x);
            if (p < 0 || p >= kk || !(value > val[kk]))
            {
                return false;
            }
            while (p + 1 < kk && (val[p + 1] > value || (val[p + 1] == value && idx[p + 1] < x)))
            {
                val[p] = val[p + 1];
                idx[p] = idx[p + 1];
                p++;
            }
            val[p] = value;
            idx[p] = x;
            return true;
        }

        /// <summary>The indices and reduced scores of a token's best min(k+1, E) experts, ties to the lower index;
        /// unused tail entries get -Inf.</summary>
        private void RankRow(int i, Span<int> idx, Span<double> val)
        {
            int m = idx.Length, count = 0;
            for (int x = 0; x < e; x++)
            {
                double r = s[i * e + x] - lambda[x];
                if (count == m && !(r > val[m - 1]))
                {
                    continue;
                }
                int pos = count == m ? m - 1 : count;
                while (pos > 0 && r > val[pos - 1])
                {
                    val[pos] = val[pos - 1];
                    idx[pos] = idx[pos - 1];
                    pos--;
                }
                val[pos] = r;
                idx[pos] = x;
                if (count < m)
                {
                    count++;
                }
            }
            for (int j = count; j < m; j++)
            {
                val[j] = double.NegativeInfinity;
                idx[j] = -1;
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

        // ----- phase 2: assignment and excess routing ----------------------------------------------------------------------

        /// <summary>Assigns every token the top-k of its reduced scores (ties to the lower index).</summary>
        public void AssignTopK()
        {
            Span<int> idx = stackalloc int[k];
            Span<double> val = stackalloc double[k];
            for (int i = 0; i < n; i++)
            {
                RankRow(i, idx, val);
                foreach (int x in idx)
                {
                    Add(i, x);
                }
            }
        }

        private void Add(int i, int x)
        {
            member[i * e + x] = true;
            slot[i * e + x] = holders[x].Count;
            holders[x].Add(i);
            load[x]++;
        }

        private void Remove(int i, int x)
        {
            member[i * e + x] = false;
            var list = holders[x];
            int at = slot[i * e + x], last = list[^1];
            list[at] = last;
            slot[last * e + x] = at;
            list.RemoveAt(list.Count - 1);
            slot[i * e + x] = -1;
            load[x]--;
        }

        /// <summary>Keeps complementary slackness for the shortest-path phase: an expert below capacity must have price 0.
        /// Zeroing a price pulls tokens in (which may empty other priced experts); prices only fall, so this ends within E rounds.</summary>
        public void ReleaseUnderfullPrices()
        {
            bool changed = true;
            while (changed)
            {
                changed = false;
                for (int x = 0; x < e; x++)
                {
                    if (lambda[x] > 0 && load[x] < c)
                    {
                        lambda[x] = 0;
                        changed = true;
                    }
                }
                if (changed)
                {
                    Reassign();
                }
            }
        }

        /// <summary>Recomputes every token's top-k under the current prices.</summary>
        private void Reassign()
        {
            for (int x = 0; x < e; x++)
            {
                foreach (int i in holders[x])
                {
                    member[i * e + x] = false;
                    slot[i * e + x] = -1;
                }
                holders[x].Clear();
                load[x] = 0;
            }
            AssignTopK();
        }

        /// <summary>Routes every unit of excess (load above C) to an expert with room along a shortest path of the
        /// contracted graph, Dijkstra with reduced costs (prices as potentials). Returns the augmentations.</summary>
        public int RouteExcess()
        {
            int augmentations = 0;
            for (int a = 0; a < e; a++)
            {
                RecomputeRow(a);
            }
            var dist = new double[e];
            var parent = new int[e];
            var done = new bool[e];
            while (true)
            {
                bool any = false;
                for (int a = 0; a < e; a++)
                {
                    any |= load[a] > c;
                }
                if (!any)
                {
                    return augmentations;
                }
                // Dijkstra from every overloaded expert (distance 0) until the first expert with room is settled.
                for (int a = 0; a < e; a++)
                {
                    dist[a] = load[a] > c ? 0 : double.PositiveInfinity;
                    parent[a] = -1;
                    done[a] = false;
                }
                int target = -1;
                double targetDist = double.PositiveInfinity;
                for (int step = 0; step < e; step++)
                {
                    int u = -1;
                    for (int a = 0; a < e; a++)
                    {
                        if (!done[a] && (u < 0 || dist[a] < dist[u]))
                        {
                            u = a;
                        }
                    }
                    if (u < 0 || double.IsPositiveInfinity(dist[u]))
                    {
                        break;
                    }
                    done[u] = true;
                    if (load[u] < c)
                    {
                        target = u;
                        targetDist = dist[u];
                        break;
                    }
                    for (int v = 0; v < e; v++)
                    {
                        int t = bestToken[u * e + v];
                        if (done[v] || t < 0)
                        {
                            continue;
                        }
                        // Reduced cost of moving token t from u to v; never below 0 in exact arithmetic.
                        double reduced = Math.Max(0.0, best[u * e + v] - lambda[u] + lambda[v]);
                        if (dist[u] + reduced < dist[v])
                        {
                            dist[v] = dist[u] + reduced;
                            parent[v] = u;
                        }
                    }
                }
                if (target < 0)
                {
                    throw new InvalidOperationException("no expert with room is reachable; C * E >= k * N guarantees one");
                }
                // Prices: lambda += targetDist - min(dist, targetDist), so that the path becomes tight.
                for (int a = 0; a < e; a++)
                {
                    lambda[a] += targetDist - Math.Min(dist[a], targetDist);
                }
                // Augment: walk the path back, moving one token per arc, and repair the pair minima it touches.
                for (int v = target; parent[v] >= 0; v = parent[v])
                {
                    int u = parent[v], t = bestToken[u * e + v];
                    Move(t, u, v);
                }
                augmentations++;
            }
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
            Sync(at);
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
            Sync(at);
        }

        private void Sync(int at)
        {
            bool any = candCount[at] > 0;
            best[at] = any ? candKey[at * Listed] : double.PositiveInfinity;
            bestToken[at] = any ? candTok[at * Listed] : -1;
        }

        private void RecomputeEntry(int a, int b)
        {
            int at = a * e + b;
            candCount[at] = 0;
            truncated[at] = false;
            Sync(at);
            foreach (int i in holders[a])
            {
                if (!member[i * e + b])
                {
                    Offer(a, b, i);
                }
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
                    if (load[a] < c)
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
                        lambda[a] = load[a] < c ? 0.0 : scores.ToDouble(phi[e] - phi[a]);
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
                    experts[i * k + j] = row[j];
                    total.Add(i * e + row[j]);
                }
            }
            return scores.ToDouble(total.Value);
        }
    }
}
