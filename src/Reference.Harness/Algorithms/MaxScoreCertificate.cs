using System.Numerics;
using System.Runtime.InteropServices;

namespace Reference.Harness.Algorithms;

/// <summary>The verdict on prices offered as an optimality certificate (see <see cref="MaxScoreCertificate"/>).</summary>
/// <param name="Exact">True when the prices prove the routing optimal in exact arithmetic: no problem and a duality gap of exactly 0.</param>
/// <param name="Gap">The duality gap D(lambda) - (the routing's total score), computed exactly and then rounded to double: 0 for an
/// exact certificate, tiny for prices rounded from an exact certificate, large for wrong prices. NaN when it cannot be computed
/// (the routing is infeasible).</param>
/// <param name="Problem">The first violated sign condition (a negative price when C*E &gt;= k*N), or null.</param>
public sealed record MaxScorePriceCheck(bool Exact, double Gap, string? Problem);

/// <summary>The verdict of <see cref="MaxScoreCertificate.Check"/> on a candidate routing.</summary>
public sealed record MaxScoreCheck
{
    /// <summary>True when every entry is -1 or an expert index, a token's experts are distinct, at most k per token, loads at most C,
    /// and the routing is a maximum flow (every token has k experts when C*E &gt;= k*N, else every expert holds C tokens).</summary>
    public required bool Feasible { get; init; }

    /// <summary>The first feasibility violation, or null.</summary>
    public string? Infeasibility { get; init; }

    /// <summary>True when the routing is feasible and proven optimal: exact Bellman-Ford on its contracted residual graph found
    /// certifying potentials (no negative cycle).</summary>
    public required bool Optimal { get; init; }

    /// <summary>0 when optimal. When feasible but not optimal: the score gained by the best simple improving cycle the checker
    /// found (exact, rounded to double), a lower bound on the distance to the optimum. NaN when infeasible.</summary>
    public required double Improvement { get; init; }

    /// <summary>The routing's total score, computed exactly and rounded once to double (NaN when an entry is out of range).</summary>
    public required double Objective { get; init; }

    /// <summary>[E] certifying prices lambda &gt;= 0 the checker computed (rounded to double from exact integers), when optimal.</summary>
    public double[]? Prices { get; init; }

    /// <summary>When C*E &lt; k*N and optimal: the threshold sigma (the source's potential) that completes the certificate: a token
    /// below k experts has every unchosen reduced score &lt;= sigma, a token with experts has every chosen one &gt;= sigma.</summary>
    public double? Threshold { get; init; }

    /// <summary>The verdict on the prices the candidate brought, or null when it brought none.</summary>
    public MaxScorePriceCheck? GivenPrices { get; init; }

    /// <summary>One line for reports.</summary>
    public string Describe() =>
        !Feasible ? $"infeasible: {Infeasibility}"
        : (Optimal ? "optimal (exact certifying prices found)" : $"not optimal: an exchange cycle gains {Improvement:R}")
          + (GivenPrices is { } p ? $"; given prices: gap {p.Gap:R}{(p.Exact ? " (exact certificate)" : "")}{(p.Problem is null ? "" : ", " + p.Problem)}" : "");
}

/// <summary>
/// The MaxScore optimality certificate (proofs/maxscore.md, Definition: Certificate; theorems maxscore.contracted-certificate and
/// maxscore.price-certificate), independent of every solver in the project: its own exact arithmetic, its own graph.
/// </summary>
/// <remarks>
/// <para>Scores and prices are doubles, so each is an exact dyadic rational m 2^q. At the common scale Q = the smallest q among
/// them, every value is the integer m 2^(q - Q), and all sums and differences below are exact <see cref="BigInteger"/>s.
/// Doubles only screen out candidates that provably cannot decide a minimum or a top-k (theorem maxscore.screened-checker),
/// so the exact work is a small part of the scores.</para>
/// <para><b>Routing.</b> For a feasible routing x the checker builds the contracted residual graph on the experts, a sink z and a
/// source s: arc a -&gt; b (a token on a, not on b, moves to b) of cost min_i (S_ia - S_ib); a -&gt; z when load_a &lt; C and
/// z -&gt; a when load_a &gt; 0, cost 0; s -&gt; b (a token with fewer than k experts takes b) of cost min_i (-S_ib); a -&gt; s
/// (a token drops a) of cost min_i S_ia. Exact Bellman-Ford either finds potentials d (then lambda_e = d(z) - d(e), clamped at 0,
/// and sigma = d(s) - d(z) certify x) or a negative cycle, which lifts to an improving exchange in the token network.</para>
/// <para><b>Prices.</b> For given prices the checker computes the dual bound D(lambda) exactly: when C*E &gt;= k*N,
/// D = C sum_e lambda_e + sum_i (sum of the k largest S_ie - lambda_e), valid for lambda &gt;= 0; when C*E &lt; k*N,
/// D = C E sigma + C sum_e lambda_e + sum over the multiset M of every token's k largest reduced scores of max(0, m - sigma),
/// minimized at sigma = the (C E)-th largest element of M. The gap D - score is 0 exactly iff the prices certify the routing.</para>
/// </remarks>
public static class MaxScoreCertificate
{
    /// <summary>Checks a candidate routing, and its prices when given.</summary>
    /// <param name="scores">S [N, E], finite.</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <param name="capacity">C &gt;= 0.</param>
    /// <param name="experts">[N, k]: each token's experts, -1 for an empty slot. The order within a row is not judged here.</param>
    /// <param name="prices">The candidate's lambda [E], or null.</param>
    /// <returns>The verdict.</returns>
    /// <exception cref="ArgumentException">Shapes disagree, k or C out of range, or a score or price is not finite.</exception>
    public static MaxScoreCheck Check(double[,] scores, int k, int capacity, int[,] experts, double[]? prices = null)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(experts);
        int n = scores.GetLength(0), e = scores.GetLength(1);

        // 1. Arguments.
        if (e < 1)
        {
            throw new ArgumentException("scores has E = 0 experts", nameof(scores));
        }
        if (k < 1 || k > e)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, $"k = {k} is outside 1..{e}");
        }
        if (capacity < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "capacity must be >= 0");
        }
        if (experts.GetLength(0) != n || experts.GetLength(1) != k)
        {
            throw new ArgumentException($"experts is [{experts.GetLength(0)}, {experts.GetLength(1)}] but must be [N, k] = [{n}, {k}]", nameof(experts));
        }
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                if (!double.IsFinite(scores[i, j]))
                {
                    throw new ArgumentException($"scores[{i}, {j}] is not finite", nameof(scores));
                }
            }
        }
        if (prices is not null)
        {
            if (prices.Length != e)
            {
                throw new ArgumentException($"prices has length {prices.Length} but scores has E = {e} columns", nameof(prices));
            }
            for (int j = 0; j < e; j++)
            {
                if (!double.IsFinite(prices[j]))
                {
                    throw new ArgumentException($"prices[{j}] is not finite", nameof(prices));
                }
            }
        }

        // 2. The common exact scale over scores and prices.
        var all = new List<double>(n * e + e);
        foreach (double s in scores)
        {
            all.Add(s);
        }
        if (prices is not null)
        {
            all.AddRange(prices);
        }
        var grid = new Grid(all);
        var problem = new Problem(n, e, k, capacity, scores, grid);

        // 3. Feasibility (membership, loads, maximum flow).
        var (member, infeasible) = problem.Membership(experts);
        if (infeasible is not null)
        {
            return new MaxScoreCheck
            {
                Feasible = false,
                Infeasibility = infeasible,
                Optimal = false,
                Improvement = double.NaN,
                Objective = member is null ? double.NaN : grid.ToDouble(problem.Score(member)),
                GivenPrices = prices is null ? null : new MaxScorePriceCheck(false, double.NaN, "the routing is infeasible"),
            };
        }
        var x = member!;
        var objective = problem.Score(x);

        // 4. Optimality: exact Bellman-Ford on the contracted residual graph.
        var contracted = problem.Contract(x);
        var (potential, cycle) = contracted.ShortestPathsOrNegativeCycle();
        double[]? certifying = null;
        double? threshold = null;
        BigInteger improvement = BigInteger.Zero;
        if (cycle is null)
        {
            // Certifying prices from the potentials; double-check them with the price test (a gap of exactly 0).
            var lambda = new BigInteger[e];
            for (int j = 0; j < e; j++)
            {
                lambda[j] = potential![contracted.SinkNode] - potential[j];
                if (problem.EveryTokenFull && lambda[j] < 0)
                {
                    lambda[j] = BigInteger.Zero; // only an empty expert can get a negative value; 0 certifies just as well
                }
            }
            var (gap, priceProblem, sigma) = problem.PriceGap(objective, lambda);
            if (gap != 0 || priceProblem is not null)
            {
                throw new InvalidOperationException($"internal error: Bellman-Ford potentials do not certify the routing (gap {gap}, {priceProblem})");
            }
            certifying = lambda.Select(grid.ToDouble).ToArray();
            threshold = problem.EveryTokenFull ? null : grid.ToDouble(sigma);
        }
        else
        {
            improvement = problem.BestExchange(cycle);
        }

        // 5. The candidate's own prices.
        MaxScorePriceCheck? given = null;
        if (prices is not null)
        {
            var lambda = prices.Select(grid.Of).ToArray();
            var (gap, priceProblem, _) = problem.PriceGap(objective, lambda);
            given = new MaxScorePriceCheck(gap == 0 && priceProblem is null, grid.ToDouble(gap), priceProblem);
        }

        return new MaxScoreCheck
        {
            Feasible = true,
            Optimal = cycle is null,
            Improvement = grid.ToDouble(improvement),
            Objective = grid.ToDouble(objective),
            Prices = certifying,
            Threshold = threshold,
            GivenPrices = given,
        };
    }

    /// <summary>The problem. Every decision is made on the scores as exact integers at the common scale (<see cref="S"/>); the
    /// scores as doubles (<c>rounded</c>) only screen out candidates that provably cannot win, so that few need exact work.</summary>
    private sealed class Problem(int n, int e, int k, int c, double[,] rounded, Grid grid)
    {
        /// <summary>Score S_ij as an exact integer at the common scale.</summary>
        private BigInteger S(int i, int j) => grid.Of(rounded[i, j]);

        /// <summary>C*E &gt;= k*N: the maximum flow gives every token k experts (and prices must be &gt;= 0).</summary>
        public bool EveryTokenFull => (long)c * e >= (long)k * n;

        /// <summary>Membership x [N, E] of a candidate, or the first reason it is infeasible (x is null when an entry is out of range).</summary>
        public (bool[,]? Member, string? Problem) Membership(int[,] experts)
        {
            var x = new bool[n, e];
            var count = new int[n];
            var load = new int[e];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < k; j++)
                {
                    int v = experts[i, j];
                    if (v == -1)
                    {
                        continue;
                    }
                    if (v < 0 || v >= e)
                    {
                        return (null, $"experts[{i}, {j}] = {v} is neither -1 nor an expert index 0..{e - 1}");
                    }
                    if (x[i, v])
                    {
                        return (x, $"token {i} has expert {v} twice");
                    }
                    x[i, v] = true;
                    count[i]++;
                    load[v]++;
                }
            }
            for (int j = 0; j < e; j++)
            {
                if (load[j] > c)
                {
                    return (x, $"expert {j} holds {load[j]} tokens, more than C = {c}");
                }
            }
            if (EveryTokenFull)
            {
                for (int i = 0; i < n; i++)
                {
                    if (count[i] != k)
                    {
                        return (x, $"token {i} has {count[i]} experts; with C*E >= k*N the maximum flow gives every token k = {k}");
                    }
                }
            }
            else
            {
                for (int j = 0; j < e; j++)
                {
                    if (load[j] != c)
                    {
                        return (x, $"expert {j} holds {load[j]} tokens; with C*E < k*N the maximum flow fills every expert to C = {c}");
                    }
                }
            }
            return (x, null);
        }

        /// <summary>The exact total score of a membership.</summary>
        public BigInteger Score(bool[,] x)
        {
            var total = BigInteger.Zero;
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    if (x[i, j])
                    {
                        total += S(i, j);
                    }
                }
            }
            return total;
        }

        /// <summary>The contracted residual graph of a feasible membership (nodes: experts, then z, then s).</summary>
        public Contracted Contract(bool[,] x)
        {
            var g = new Contracted(e);
            var count = new int[n];
            var holders = new List<int>[e]; // the tokens on each expert, ascending
            for (int a = 0; a < e; a++)
            {
                holders[a] = [];
            }
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    if (x[i, j])
                    {
                        count[i]++;
                        holders[j].Add(i);
                    }
                }
            }
            // Expert-to-expert exchanges: the cheapest token on a and not on b (ties to the lower token). Subtraction of doubles
            // rounds correctly, and rounding is monotone, so the exact minimum is among the tokens whose rounded key equals the
            // rounded minimum: the scan finds that minimum in doubles, then compares only those tokens exactly.
            var roundedMin = new double[e];
            var best = new BigInteger?[e];
            var token = new int[e];
            for (int a = 0; a < e; a++)
            {
                Array.Fill(roundedMin, double.PositiveInfinity);
                Array.Clear(best);
                foreach (int i in holders[a])
                {
                    var scores = Row(rounded, i);
                    var on = Row(x, i);
                    double from = scores[a];
                    for (int b = 0; b < scores.Length; b++)
                    {
                        double key = from - scores[b];
                        if (key < roundedMin[b] && !on[b])
                        {
                            roundedMin[b] = key;
                        }
                    }
                }
                foreach (int i in holders[a]) // ascending tokens, so a strict comparison keeps the lower token on ties
                {
                    var scores = Row(rounded, i);
                    var on = Row(x, i);
                    for (int b = 0; b < scores.Length; b++)
                    {
                        if (scores[a] - scores[b] != roundedMin[b] || on[b])
                        {
                            continue;
                        }
                        var key = S(i, a) - S(i, b);
                        if (best[b] is not { } known || key < known)
                        {
                            best[b] = key;
                            token[b] = i;
                        }
                    }
                }
                for (int b = 0; b < e; b++)
                {
                    if (best[b] is { } cost)
                    {
                        g.Add(a, b, cost, token[b]);
                    }
                }
            }
            // Capacity arcs through the sink.
            for (int a = 0; a < e; a++)
            {
                if (holders[a].Count < c)
                {
                    g.Add(a, g.SinkNode, BigInteger.Zero, -1);
                }
                if (holders[a].Count > 0)
                {
                    g.Add(g.SinkNode, a, BigInteger.Zero, -1);
                }
            }
            // Arcs through the source: a token below k takes b (cost -S_ib); a token leaves a (cost S_ia). Doubles compare
            // exactly, so the cheapest token is found on them (ties to the lower token) and only its cost is made exact.
            for (int b = 0; b < e; b++)
            {
                int taker = -1, leaver = -1;
                for (int i = 0; i < n; i++)
                {
                    if (count[i] < k && !x[i, b] && (taker < 0 || rounded[i, b] > rounded[taker, b]))
                    {
                        taker = i;
                    }
                    if (x[i, b] && (leaver < 0 || rounded[i, b] < rounded[leaver, b]))
                    {
                        leaver = i;
                    }
                }
                if (taker >= 0)
                {
                    g.Add(g.SourceNode, b, -S(taker, b), taker);
                }
                if (leaver >= 0)
                {
                    g.Add(b, g.SourceNode, S(leaver, b), leaver);
                }
            }
            return g;
        }

        /// <summary>
        /// Lifts a negative contracted cycle to a closed walk in the token network's residual graph, splits the walk into simple
        /// cycles (each one is an exchange the current routing can make on its own), and returns the largest gain among them.
        /// </summary>
        public BigInteger BestExchange(IReadOnlyList<ContractedArc> cycle)
        {
            // Residual nodes: experts 0..E-1, z = E, s = E+1, token i = E+2+i; each step carries its residual cost.
            int Token(int i) => e + 2 + i;
            var walk = new List<int> { cycle[0].From };
            var cost = new List<BigInteger>();
            foreach (var arc in cycle)
            {
                if (arc.Token < 0)
                {
                    walk.Add(arc.To);            // a -> z or z -> a
                    cost.Add(BigInteger.Zero);
                    continue;
                }
                int i = arc.Token;
                // Into the token: the reverse of its arc to expert From (gives back S_i,From), or from the source (cost 0).
                walk.Add(Token(i));
                cost.Add(arc.From == Contracted.Source(e) ? BigInteger.Zero : S(i, arc.From));
                // Out of the token: to expert To (cost -S_i,To), or back to the source (cost 0).
                walk.Add(arc.To);
                cost.Add(arc.To == Contracted.Source(e) ? BigInteger.Zero : -S(i, arc.To));
            }
            // Split the closed walk at repeated nodes (a stack of positions); every piece is a simple residual cycle.
            var best = BigInteger.Zero;
            var stackNodes = new List<int>();
            var stackCosts = new List<BigInteger>(); // cost of the step that entered stackNodes[p], p >= 1
            var position = new Dictionary<int, int>();
            for (int p = 0; p < walk.Count; p++)
            {
                int v = walk[p];
                BigInteger step = p == 0 ? BigInteger.Zero : cost[p - 1];
                if (position.TryGetValue(v, out int at))
                {
                    var cycleCost = step;
                    for (int q = at + 1; q < stackNodes.Count; q++)
                    {
                        cycleCost += stackCosts[q];
                    }
                    if (-cycleCost > best)
                    {
                        best = -cycleCost;
                    }
                    for (int q = stackNodes.Count - 1; q > at; q--)
                    {
                        position.Remove(stackNodes[q]);
                        stackNodes.RemoveAt(q);
                        stackCosts.RemoveAt(q);
                    }
                    continue;
                }
                position[v] = stackNodes.Count;
                stackNodes.Add(v);
                stackCosts.Add(step);
            }
            if (best <= 0)
            {
                throw new InvalidOperationException("internal error: a negative contracted cycle split into no improving exchange");
            }
            return best;
        }

        /// <summary>
        /// The exact duality gap of prices lambda for a feasible membership with score <paramref name="objective"/>, the first sign
        /// problem, and the threshold sigma that minimizes the dual bound when C*E &lt; k*N.
        /// </summary>
        public (BigInteger Gap, string? Problem, BigInteger Sigma) PriceGap(BigInteger objective, BigInteger[] lambda)
        {
            string? problem = null;
            if (EveryTokenFull)
            {
                // D = C sum lambda+ + sum_i (k largest S_i - lambda+); a negative price is a violation (and is read as 0).
                var lp = new BigInteger[e];
                for (int j = 0; j < e; j++)
                {
                    if (lambda[j] < 0)
                    {
                        problem ??= $"prices[{j}] < 0";
                    }
                    lp[j] = BigInteger.Max(lambda[j], BigInteger.Zero);
                }
                var bound = c * Sum(lp);
                var roundedLp = lp.Select(grid.ToDouble).ToArray();
                for (int i = 0; i < n; i++)
                {
                    bound += Sum(LargestReduced(i, lp, roundedLp));
                }
                return (bound - objective, problem, BigInteger.Zero);
            }

            // C*E < k*N: D(sigma) = C E sigma + C sum lambda + sum_{m in M} max(0, m - sigma), M = every token's k largest reduced
            // scores; its minimum over sigma is at the (C E)-th largest element of M (for C E = 0 the bound is 0).
            var multiset = new List<BigInteger>(n * k);
            var roundedLambda = lambda.Select(grid.ToDouble).ToArray();
            for (int i = 0; i < n; i++)
            {
                multiset.AddRange(LargestReduced(i, lambda, roundedLambda));
            }
            long flow = (long)c * e;
            if (flow == 0)
            {
                return (-objective, problem, BigInteger.Zero);
            }
            multiset.Sort((u, v) => v.CompareTo(u)); // largest first
            var sorted = multiset;
            var sigma = sorted[(int)(flow - 1)];
            var d = flow * sigma + c * Sum(lambda);
            foreach (var m in sorted)
            {
                if (m > sigma)
                {
                    d += m - sigma;
                }
            }
            return (d - objective, problem, sigma);
        }

        private static BigInteger Sum(IEnumerable<BigInteger> values)
        {
            var total = BigInteger.Zero;
            foreach (var v in values)
            {
                total += v;
            }
            return total;
        }

        /// <summary>Row i of a row-major matrix, as a span (a [N, E] array stores its rows one after another).</summary>
        private static ReadOnlySpan<T> Row<T>(T[,] matrix, int i) =>
            MemoryMarshal.CreateReadOnlySpan(ref matrix[i, 0], matrix.GetLength(1));

        /// <summary>The k-th largest of the values (1 &lt;= k &lt;= length), by insertion into a descending list of k.</summary>
        private static double KthLargest(double[] values, int k)
        {
            var top = new double[k];
            Array.Fill(top, double.NegativeInfinity);
            foreach (double v in values)
            {
                if (!(v > top[k - 1]))
                {
                    continue;
                }
                int p = k - 1;
                for (; p > 0 && v > top[p - 1]; p--)
                {
                    top[p] = top[p - 1];
                }
                top[p] = v;
            }
            return top[k - 1];
        }

        /// <summary>
        /// Token i's k largest reduced scores S_ij - lambda_j, exact, largest first. Doubles only screen (proofs/maxscore.md,
        /// theorem maxscore.screened-checker): each rounded reduced score r~_j = fl(S_ij - fl(lambda_j)) is within delta / 2
        /// of the exact one, so an expert with r~_j below the k-th largest r~ minus 4 delta (computed in doubles, which costs at
        /// most 2 delta) has k experts exactly above it and is not needed. The rest are compared exactly. Anything not finite
        /// in the screen keeps every expert.
        /// </summary>
        private List<BigInteger> LargestReduced(int i, BigInteger[] lambda, double[] roundedLambda)
        {
            var r = new double[e];
            double widest = 0;
            for (int j = 0; j < e; j++)
            {
                r[j] = rounded[i, j] - roundedLambda[j];
                widest = Math.Max(widest, Math.Abs(r[j]) + Math.Abs(roundedLambda[j]));
            }
            // Two roundings (lambda to double, then the subtraction) err by at most 2^-52 (|r~_j| + |lambda~_j|) + 2^-1074,
            // at most delta / 2.
            double delta = Math.ScaleB(widest, -50) + Math.ScaleB(1.0, -1070);
            double cut = KthLargest(r, k) - 4 * delta;
            var kept = new List<BigInteger>();
            for (int j = 0; j < e; j++)
            {
                if (!double.IsFinite(cut) || !(r[j] < cut))
                {
                    kept.Add(S(i, j) - lambda[j]);
                }
            }
            kept.Sort((u, v) => v.CompareTo(u)); // largest first
            return kept.GetRange(0, k);
        }
    }

    /// <summary>One arc of the contracted graph; <c>Token</c> is the token that realizes it, or -1 for a capacity arc.</summary>
    private sealed record ContractedArc(int From, int To, BigInteger Cost, int Token);

    /// <summary>The contracted residual graph: experts 0..E-1, the sink z = E, the source s = E+1.</summary>
    private sealed class Contracted(int experts)
    {
        private readonly List<ContractedArc> arcs = [];

        public int SinkNode => experts;

        public int SourceNode => experts + 1;

        public int Nodes => experts + 2;

        public static int Source(int experts) => experts + 1;

        public void Add(int from, int to, BigInteger cost, int token) => arcs.Add(new ContractedArc(from, to, cost, token));

        /// <summary>
        /// Exact Bellman-Ford from a virtual root joined to every node at cost 0: either the shortest distances d with d(v) &lt;= d(u) + cost(u, v) on every arc, or a negative cycle in arc order.
        /// Distances are integers that only decrease, so without a negative cycle the passes stop; with one, the predecessor graph
        /// eventually holds a cycle, and every cycle of the predecessor graph is negative.
        /// </summary>
        public (BigInteger[]? Distances, IReadOnlyList<ContractedArc>? Cycle) ShortestPathsOrNegativeCycle()
        {
            int v = Nodes;
            var d = new BigInteger[v];          // 0: the root's arcs
            var pred = new ContractedArc?[v];
            for (int pass = 1; ; pass++)
            {
                bool changed = false;
                foreach (var arc in arcs)
                {
                    var candidate = d[arc.From] + arc.Cost;
                    if (candidate < d[arc.To])
                    {
                        d[arc.To] = candidate;
                        pred[arc.To] = arc;
                        changed = true;
                    }
                }
                if (!changed)
                {
                    return (d, null);
                }
                if (pass >= v && FindPredecessorCycle(pred) is { } cycle)
                {
                    return (null, cycle);
                }
            }
        }

        private static List<ContractedArc>? FindPredecessorCycle(ContractedArc?[] pred)
        {
            int v = pred.Length;
            var state = new int[v]; // 0 unvisited, 1 on the current walk, 2 done
            for (int start = 0; start < v; start++)
            {
                var path = new List<int>();
                int u = start;
                while (u >= 0 && state[u] == 0)
                {
                    state[u] = 1;
                    path.Add(u);
                    u = pred[u]?.From ?? -1;
                }
                if (u >= 0 && state[u] == 1)
                {
                    // u is on a cycle of predecessor arcs: collect it backwards, then reverse into arc order.
                    var cycle = new List<ContractedArc>();
                    int w = u;
                    do
                    {
                        var arc = pred[w]!;
                        cycle.Add(arc);
                        w = arc.From;
                    }
                    while (w != u);
                    cycle.Reverse();
                    var total = BigInteger.Zero;
                    foreach (var arc in cycle)
                    {
                        total += arc.Cost;
                    }
                    if (total >= 0)
                    {
                        throw new InvalidOperationException("internal error: a predecessor cycle is not negative");
                    }
                    return cycle;
                }
                foreach (int p in path)
                {
                    state[p] = 2;
                }
            }
            return null;
        }
    }

    /// <summary>Doubles as integers at one binary scale 2^Q, Q the smallest exponent among the values (own arithmetic, on purpose).</summary>
    private sealed class Grid
    {
        private readonly int q;

        public Grid(IEnumerable<double> values)
        {
            int smallest = int.MaxValue;
            foreach (double v in values)
            {
                if (v != 0)
                {
                    smallest = Math.Min(smallest, Split(v).Exponent);
                }
            }
            q = smallest == int.MaxValue ? 0 : smallest;
        }

        /// <summary>The integer X with x = X 2^Q, exactly.</summary>
        public BigInteger Of(double x)
        {
            if (x == 0)
            {
                return BigInteger.Zero;
            }
            var (mantissa, exponent) = Split(x);
            return new BigInteger(mantissa) << (exponent - q);
        }

        /// <summary>X 2^Q rounded to the nearest double (ties to even), subnormal range included.</summary>
        public double ToDouble(BigInteger value)
        {
            if (value.IsZero)
            {
                return 0.0;
            }
            int sign = value.Sign;
            var a = BigInteger.Abs(value);
            long length = (long)a.GetBitLength();
            long top = length - 1 + q;           // the binary exponent of the leading bit
            if (top > 1023)
            {
                return sign * double.PositiveInfinity;
            }
            long precision = top >= -1022 ? 53 : 53 - (-1022 - top);
            long shift = length - precision;
            if (shift <= 0)
            {
                return sign * Math.ScaleB((double)(long)a, q);
            }
            var kept = a >> (int)shift;
            var rest = a - (kept << (int)shift);
            var half = BigInteger.One << (int)(shift - 1);
            if (rest > half || (rest == half && !kept.IsEven))
            {
                kept += 1;
            }
            return sign * Math.ScaleB((double)(long)kept, (int)(q + shift));
        }

        /// <summary>x = Mantissa 2^Exponent with an integer mantissa (signed).</summary>
        private static (long Mantissa, int Exponent) Split(double x)
        {
            long bits = BitConverter.DoubleToInt64Bits(x);
            bool negative = bits < 0;
            int biased = (int)((bits >> 52) & 0x7FF);
            long fraction = bits & 0xFFFFFFFFFFFFFL;
            long mantissa = biased == 0 ? fraction : fraction | (1L << 52);
            int exponent = biased == 0 ? -1074 : biased - 1075;
            return (negative ? -mantissa : mantissa, exponent);
        }
    }
}
