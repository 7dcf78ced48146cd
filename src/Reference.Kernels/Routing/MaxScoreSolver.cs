using System.Numerics;

namespace Reference.Kernels.Routing;

/// <summary>The result of the fast exact MaxScore solver.</summary>
/// <param name="Experts">[N * k] row-major [N, k]: each token's experts by descending score (ties to the lower index).</param>
/// <param name="Load">[E]: tokens per expert.</param>
/// <param name="Objective">The total score of the routing, summed token by token in expert order.</param>
/// <param name="Prices">[E]: the certificate's prices lambda, rounded to double from the exact rational potentials.</param>
/// <param name="Sweeps">Price sweeps of phase 1.</param>
/// <param name="Augmentations">Shortest-path augmentations of phase 2.</param>
/// <param name="CyclesCanceled">Negative cycles found and canceled by the exact finish (usually 0).</param>
public sealed record MaxScoreFastResult(int[] Experts, int[] Load, double Objective, double[] Prices, int Sweeps, int Augmentations, int CyclesCanceled);

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
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int done = state.ApproximatePrices(sweeps);
        var t1 = clock.Elapsed.TotalMilliseconds;
        state.AssignTopK();
        state.ReleaseUnderfullPrices();
        var t2 = clock.Elapsed.TotalMilliseconds;
        int augmentations = state.RouteExcess();
        var t3 = clock.Elapsed.TotalMilliseconds;
        int cycles = state.FinishExactly();
        var t4 = clock.Elapsed.TotalMilliseconds;
        if (Environment.GetEnvironmentVariable("MAXSCORE_TRACE") == "1") Console.Error.WriteLine($"phase1 {t1:F1} assign {t2 - t1:F1} route {t3 - t2:F1} exact {t4 - t3:F1}");
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
        }

        // ----- phase 1: approximate prices ---------------------------------------------------------------------------------

        /// <summary>Damped Jacobi steps on the dual: every expert's target price is the smallest price (at least 0) at which
        /// at most C tokens would still want it, given the other prices; all prices move part of the way at once.
        /// One sweep is O(N E): one top-(k+1) ranking per token, then one quickselect per expert. Returns the sweeps done.</summary>
        public int ApproximatePrices(int sweeps)
        {
            if (sweeps <= 0 || n <= c)
            {
                return 0; // with N <= C no expert can overflow: prices stay 0
            }
            var thresholds = new double[e * n];  // [E, N]: t_i^x = S_ix - (token i's k-th best reduced score among experts != x)
            var idx = new int[k + 1];
            var val = new double[k + 1];
            var target = new double[e];
            double omega = Damping;
            for (int sweep = 0; sweep < sweeps; sweep++)
            {
                for (int i = 0; i < n; i++)
                {
                    RankRow(i, idx, val);
                    double inside = k < e ? val[k] : double.NegativeInfinity, outside = val[k - 1];
                    int row = i * e;
                    for (int x = 0; x < e; x++)
                    {
                        thresholds[x * n + i] = s[row + x] - outside;
                    }
                    for (int j = 0; j < k; j++)
                    {
                        thresholds[idx[j] * n + i] = s[row + idx[j]] - inside;
                    }
                }
                for (int x = 0; x < e; x++)
                {
                    double t = NthLargest(thresholds.AsSpan(x * n, n), c); // the (C+1)-th largest
                    target[x] = double.IsFinite(t) ? Math.Max(0.0, t) : 0.0;
                }
                for (int x = 0; x < e; x++)
                {
                    lambda[x] += omega * (target[x] - lambda[x]);
                }
            }
            return sweeps;
        }

        /// <summary>The step size of the damped Jacobi price updates.</summary>
        private const double Damping = 0.5;

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
            var best = new double[e * e];   // [E, E] min over tokens on a, not on b, of S_ia - S_ib
            var bestToken = new int[e * e];
            for (int a = 0; a < e; a++)
            {
                RecomputeRow(a, best, bestToken);
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
                    Move(t, u, v, best, bestToken);
                }
                augmentations++;
            }
        }

        /// <summary>Moves token t from expert u to expert v and repairs the pair minima that the move touches:
        /// row u loses t (entries whose best token was t are rescanned), row v gains t, and for the token's other experts x
        /// the entry (x, u) gains t while the entry (x, v) loses it.</summary>
        private void Move(int t, int u, int v, double[] best, int[] bestToken)
        {
            Remove(t, u);
            Add(t, v);
            int row = t * e;
            for (int b = 0; b < e; b++)
            {
                if (bestToken[u * e + b] == t)
                {
                    RecomputeEntry(u, b, best, bestToken);
                }
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
                            Offer(v, b, t, best, bestToken);
                        }
                    }
                    continue;
                }
                Offer(x, u, t, best, bestToken);
                if (bestToken[x * e + v] == t)
                {
                    RecomputeEntry(x, v, best, bestToken);
                }
            }
        }

        private void Offer(int a, int b, int t, double[] best, int[] bestToken)
        {
            double key = s[t * e + a] - s[t * e + b];
            int at = a * e + b;
            if (key < best[at] || (key == best[at] && t < bestToken[at]))
            {
                best[at] = key;
                bestToken[at] = t;
            }
        }

        private void RecomputeEntry(int a, int b, double[] best, int[] bestToken)
        {
            int at = a * e + b;
            best[at] = double.PositiveInfinity;
            bestToken[at] = -1;
            foreach (int i in holders[a])
            {
                if (!member[i * e + b])
                {
                    Offer(a, b, i, best, bestToken);
                }
            }
        }

        /// <summary>best[a, b] = min over tokens on a and not on b of S_ia - S_ib, with the token (ties to the lower token).</summary>
        private void RecomputeRow(int a, double[] best, int[] bestToken)
        {
            for (int b = 0; b < e; b++)
            {
                best[a * e + b] = double.PositiveInfinity;
                bestToken[a * e + b] = -1;
            }
            foreach (int i in holders[a])
            {
                double sa = s[i * e + a];
                int row = i * e;
                for (int b = 0; b < e; b++)
                {
                    if (member[row + b])
                    {
                        continue;
                    }
                    double key = sa - s[row + b];
                    int at = a * e + b;
                    if (key < best[at] || (key == best[at] && i < bestToken[at]))
                    {
                        best[at] = key;
                        bestToken[at] = i;
                    }
                }
            }
        }

        // ----- phase 3: the exact finish --------------------------------------------------------------------------------

        /// <summary>Exact Bellman-Ford on the contracted graph; cancels negative cycles until none is left, and sets the
        /// prices from the exact potentials. Returns the cycles canceled.</summary>
        public int FinishExactly()
        {
            var exact = new ExactScores(s);
            int canceled = 0;
            while (true)
            {
                var graph = ExactContractedGraph(exact);
                var cycle = graph.FindNegativeCycle(out var potentials);
                if (cycle is null)
                {
                    for (int a = 0; a < e; a++)
                    {
                        lambda[a] = exact.ToDouble(potentials[e] - potentials[a]); // lambda_a = phi(z) - phi(a)
                    }
                    return canceled;
                }
                // Move the cycle's tokens: arcs a -> b with a token move each (arcs through z only shift spare capacity).
                // A token may carry two arcs of the cycle (a -> b, then b -> d); apply each move once its token is on its tail.
                var pending = cycle.Where(arc => arc.Token >= 0).ToList();
                while (pending.Count > 0)
                {
                    int ready = pending.FindIndex(arc => member[arc.Token * e + arc.From] && !member[arc.Token * e + arc.To]);
                    if (ready < 0)
                    {
                        throw new InvalidOperationException("a negative cycle whose moves cannot be applied");
                    }
                    var arc = pending[ready];
                    Remove(arc.Token, arc.From);
                    Add(arc.Token, arc.To);
                    pending.RemoveAt(ready);
                }
                canceled++;
            }
        }

        /// <summary>The contracted graph with exact weights: nodes 0..E-1 experts, E the sink z.</summary>
        private ContractedGraph ExactContractedGraph(ExactScores exact)
        {
            var g = new ContractedGraph(e + 1);
            double slack = exact.MaxAbs * Math.ScaleB(1.0, -52);
            var approx = new double[e * e];
            var bestToken = new int[e * e];
            for (int a = 0; a < e; a++)
            {
                RecomputeRow(a, approx, bestToken);
            }
            for (int a = 0; a < e; a++)
            {
                for (int b = 0; b < e; b++)
                {
                    int at = a * e + b;
                    if (bestToken[at] < 0)
                    {
                        continue;
                    }
                    // A rounded difference errs by at most u * max|S| (u = 2^-53): only tokens within twice that of the
                    // rounded minimum can hold the exact minimum, and those are compared exactly.
                    double bound = approx[at] + 2 * slack;
                    BigInteger bestExact = default;
                    int bestTok = -1;
                    foreach (int i in holders[a])
                    {
                        if (member[i * e + b])
                        {
                            continue;
                        }
                        double key = s[i * e + a] - s[i * e + b];
                        if (key > bound)
                        {
                            continue;
                        }
                        var exactKey = exact.Of(i * e + a) - exact.Of(i * e + b);
                        if (bestTok < 0 || exactKey < bestExact || (exactKey == bestExact && i < bestTok))
                        {
                            bestExact = exactKey;
                            bestTok = i;
                        }
                    }
                    g.AddArc(a, b, bestExact, bestTok);
                }
                if (load[a] < c)
                {
                    g.AddArc(a, e, BigInteger.Zero, -1);
                }
                if (load[a] > 0)
                {
                    g.AddArc(e, a, BigInteger.Zero, -1);
                }
            }
            return g;
        }

        public MaxScoreFastResult Result(int sweeps, int augmentations, int cycles)
        {
            var experts = new int[n * k];
            double objective = 0;
            Span<int> row = stackalloc int[k];
            for (int i = 0; i < n; i++)
            {
                int count = 0;
                for (int x = 0; x < e; x++)
                {
                    if (member[i * e + x])
                    {
                        row[count++] = x;
                    }
                }
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
                    objective += s[i * e + row[j]];
                }
            }
            return new MaxScoreFastResult(experts, (int[])load.Clone(), objective, (double[])lambda.Clone(), sweeps, augmentations, cycles);
        }
    }
}
