using System.Numerics;
using Reference.Flow;
using Reference.Numerics;

namespace Reference.Routing;

/// <summary>Options for <see cref="MaxScore.Route"/> and <see cref="MaxScoreTwoStage.Route"/>. Defaults follow proofs/maxscore.md, Definition: Parameters.</summary>
public sealed record MaxScoreOptions
{
    /// <summary>Experts per token, 1..E. Default 2.</summary>
    public int K { get; init; } = 2;

    /// <summary>Expert capacity C &gt;= 0; null derives it as ceil(CapacityFactor * N * k / E).</summary>
    public int? Capacity { get; init; }

    /// <summary>The capacity factor cf &gt;= 0 used when <see cref="Capacity"/> is null. Default 1.</summary>
    public double CapacityFactor { get; init; } = 1.0;

    /// <summary>Divide each token's weights by their sum (when that sum is not 0). Default false.</summary>
    public bool Normalize { get; init; }
}

/// <summary>The exact MaxScore routing and its certificate.</summary>
/// <param name="Experts">[N, k]: each token's experts by descending score, ties to the lower index, -1 padding after them.</param>
/// <param name="Weights">[N, k]: S at those experts (normalized per row when asked), 0 at padding.</param>
/// <param name="Load">[E]: tokens per expert.</param>
/// <param name="Objective">The total score, computed exactly and rounded once to double.</param>
/// <param name="Prices">[E]: certificate prices lambda &gt;= 0 (rounded to double from exact integers): lambda_e &gt; 0 only if
/// load_e = C, and every token's experts are a top set of S_i - lambda.</param>
/// <param name="Threshold">C*E &lt; k*N only: sigma, which completes the certificate (a token with fewer than k experts has every
/// unchosen reduced score &lt;= sigma; a token with experts has every chosen reduced score &gt;= sigma). Null otherwise.</param>
/// <param name="Capacity">The capacity C used.</param>
/// <param name="ExactCosts">True when the int64 costs handed to the min-cost flow were the exact scores (at a common binary
/// scale); false when they were rounded, in which case the exact finish corrected the flow.</param>
/// <param name="CyclesCanceled">Negative cycles the exact finish canceled (0 whenever the costs were exact).</param>
public sealed record MaxScoreResult(
    int[,] Experts, double[,] Weights, int[] Load, double Objective, double[] Prices, double? Threshold, int Capacity, bool ExactCosts,
    int CyclesCanceled);

/// <summary>
/// MaxScore routing, the reference (proofs/maxscore.md, Definition: Exact routing): among the maximum flows of the token-expert network, one of
/// largest total score. Double precision in, exact arithmetic inside, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>Network: source -&gt; token i (capacity k, cost 0); token i -&gt; expert e (capacity 1, cost -S_ie); expert e -&gt; sink
/// (capacity C, cost 0). The maximum flow is F = min(k N, C E): every token gets k distinct experts when C E &gt;= k N, otherwise
/// every expert ends full and tokens get fewer.</para>
/// <para>Exactness. Scores are doubles, so they are exact integers X at a common binary scale 2^Q (<see cref="DyadicScale"/>).
/// The flow's costs are max X - X_ie &gt;= 0 (a constant shift: every unit crosses one token-expert arc, so all maximum flows
/// move by the same amount). When they fit the int64 range of <see cref="MinCostFlow"/> (|cost| (n + 1) and F |cost| below
/// 2^62), the flow's answer is exact. Otherwise the costs are rounded to the 62-bit budget, and the flow's answer is a maximum
/// flow that is optimal for the rounded costs. Either way the exact finish follows: exact Bellman-Ford on the residual network
/// with the exact integer costs, started from the flow's potentials; each negative cycle found is canceled (one unit around
/// it, which keeps the flow maximum and raises the exact score), and when none is left the distances are exact potentials
/// that certify the flow (proofs/maxscore.md, theorems maxscore.reduction and maxscore.price-certificate).</para>
/// <para>Sources: the MaxScore paper's formulation of routing as a min-cost maximum-flow problem; Ahuja, Magnanti and Orlin,
/// <i>Network Flows</i> (1993), sections 9.3 (negative-cycle optimality) and 9.7 (successive shortest paths).</para>
/// </remarks>
public static class MaxScore
{
    /// <summary>The capacity C: the explicit one, or ceil(cf * N * k / E) computed in double.</summary>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E &gt;= 1.</param>
    /// <param name="options">k, capacity or capacity factor.</param>
    /// <returns>C.</returns>
    /// <exception cref="ArgumentException">A negative capacity, or a capacity factor that is negative or not finite.</exception>
    public static int CapacityFor(int tokens, int experts, MaxScoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Capacity is { } c)
        {
            if (c < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(options), c, $"capacity = {c} must be >= 0");
            }
            return c;
        }
        double cf = options.CapacityFactor;
        if (!double.IsFinite(cf) || cf < 0)
        {
            throw new ArgumentException($"capacity_factor = {Guard.Describe(cf)} must be finite and >= 0", nameof(options));
        }
        double raw = Math.Ceiling(cf * tokens * options.K / Math.Max(experts, 1));
        return raw >= int.MaxValue ? int.MaxValue : (int)raw;
    }

    /// <summary>Routes every token exactly (maximum flow first, then the largest total score).</summary>
    /// <param name="scores">S [N, E], finite (usually softmax probabilities; any finite reals work).</param>
    /// <param name="options">k, capacity, normalization.</param>
    /// <returns>The routing, its total score and its certificate prices.</returns>
    /// <exception cref="ArgumentException">A score is not finite, E = 0, k is outside 1..E, or the capacity is invalid.</exception>
    public static MaxScoreResult Route(double[,] scores, MaxScoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(options);
        int n = scores.GetLength(0), e = scores.GetLength(1), k = options.K;

        // 1. Check the inputs; C and the maximum flow F = min(k N, C E).
        if (e == 0)
        {
            throw new ArgumentException("scores has E = 0 experts; routing needs at least one", nameof(scores));
        }
        Guard.InRange(k, 1, e, "k");
        Guard.Finite(scores, nameof(scores));
        int c = CapacityFor(n, e, options);
        long flow = Math.Min((long)k * n, (long)c * e);

        // 2. Exact integer scores at the common binary scale.
        var scale = new DyadicScale(Flatten(scores));
        var exact = new BigInteger[n, e];    // [N, E]
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                exact[i, j] = scale.Of(scores[i, j]);
            }
        }

        // 3. int64 costs for the flow: M - X_ie with M = max X, so every cost is >= 0. Each unit of a flow crosses exactly one
        //    token -> expert arc, so the shift adds M F to every flow of value F and leaves the optimum among maximum flows
        //    unchanged; non-negative costs spare the flow its negative-arc saturation (which would route N E units back).
        //    Exact when M - X fits the budget, else rounded (the exact finish repairs the answer).
        var top = n == 0 ? BigInteger.Zero : Extreme(exact, BigInteger.Max);
        int nodes = n + e + 2;
        long budget = (1L << 62) / Math.Max(nodes + 1L, flow + 1L);
        var spread = n == 0 ? BigInteger.Zero : top - Extreme(exact, BigInteger.Min);
        int shift = spread <= budget ? 0 : (int)(spread.GetBitLength() - new BigInteger(budget).GetBitLength()) + 1;
        var cost = new long[n, e];           // [N, E]: M - X_ie, scaled
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                var v = top - exact[i, j];
                cost[i, j] = (long)(shift == 0 ? v : (v + (BigInteger.One << (shift - 1))) >> shift);
            }
        }

        // 4. The min-cost maximum flow on the network of proofs/maxscore.md, Definition: Exact routing.
        //    Nodes: source 0, token i -> 1 + i, expert e -> 1 + N + e, sink 1 + N + E.
        int source = 0, sink = n + e + 1;
        var network = new MinCostFlow();
        var tokenArc = new int[n, e];
        for (int i = 0; i < n; i++)
        {
            network.AddArc(source, 1 + i, k, 0);
        }
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                tokenArc[i, j] = network.AddArc(1 + i, 1 + n + j, 1, cost[i, j]);
            }
        }
        for (int j = 0; j < e; j++)
        {
            network.AddArc(1 + n + j, sink, c, 0);
        }
        network.SetNodeSupply(source, (long)k * n);
        network.SetNodeSupply(sink, -(long)k * n);
        var status = network.SolveMaxFlowWithMinCost();
        if (status != MinCostFlowStatus.Optimal || network.MaximumFlow() != flow)
        {
            throw new InvalidOperationException(
                $"internal error: the min-cost flow returned {status} with flow {network.MaximumFlow()}, expected the maximum {flow}");
        }
        var member = new bool[n, e];         // [N, E]: x_ie
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                member[i, j] = network.Flow(tokenArc[i, j]) == 1;
            }
        }

        // 5. The exact finish: cancel negative residual cycles in exact arithmetic, then read exact potentials. The flow's
        //    potentials p start the search: d = -p, less M (in exact units) at experts and the sink, undoes the shift, so
        //    with exact costs they already satisfy every residual arc and one pass confirms them.
        var residual = new ExactResidual(exact, k, c);
        var start = new BigInteger[nodes];
        for (int v = 0; v < nodes; v++)
        {
            start[v] = -(new BigInteger(network.Potential(v)) << shift) - (v > n ? top : BigInteger.Zero);
        }
        int canceled = 0;
        BigInteger[] distance;
        while (true)
        {
            var (d, cycle) = residual.ShortestDistancesOrNegativeCycle(member, start);
            if (cycle is null)
            {
                distance = d!;
                break;
            }
            residual.Cancel(member, cycle);
            canceled++;
        }

        // 6. Prices lambda_e = d(sink) - d(e) and the threshold sigma = d(source) - d(sink); with C E >= k N a negative value
        //    (possible only on an empty expert) is raised to 0, which certifies just as well.
        bool everyTokenFull = (long)c * e >= (long)k * n;
        var prices = new double[e];
        for (int j = 0; j < e; j++)
        {
            var lambda = distance[residual.Sink] - distance[residual.Expert(j)];
            prices[j] = scale.ToDouble(everyTokenFull && lambda < 0 ? BigInteger.Zero : lambda);
        }
        double? threshold = everyTokenFull ? null : scale.ToDouble(distance[residual.Source] - distance[residual.Sink]);

        // 7. Outputs: experts by descending score (ties to the lower index), weights, load, exact objective.
        var experts = new int[n, k];
        var weights = new double[n, k];
        var load = new int[e];
        var total = BigInteger.Zero;
        for (int i = 0; i < n; i++)
        {
            var row = new List<int>();
            for (int j = 0; j < e; j++)
            {
                if (member[i, j])
                {
                    row.Add(j);
                    load[j]++;
                    total += exact[i, j];
                }
            }
            row.Sort((a, b) => Ranking.RanksBefore(scores[i, a], a, scores[i, b], b) ? -1 : a == b ? 0 : 1);
            WriteRow(scores, i, row, options.Normalize, experts, weights);
        }
        return new MaxScoreResult(experts, weights, load, scale.ToDouble(total), prices, threshold, c, shift == 0, canceled);
    }

    /// <summary>Writes one token's experts (in the given order, -1 padding) and weights (S, normalized by the row sum when asked
    /// and that sum is not 0).</summary>
    internal static void WriteRow(double[,] scores, int token, IReadOnlyList<int> row, bool normalize, int[,] experts, double[,] weights)
    {
        int k = experts.GetLength(1);
        double sum = 0;
        foreach (int j in row)
        {
            sum += scores[token, j];
        }
        for (int slot = 0; slot < k; slot++)
        {
            if (slot < row.Count)
            {
                experts[token, slot] = row[slot];
                double w = scores[token, row[slot]];
                weights[token, slot] = normalize && sum != 0 ? w / sum : w;
            }
            else
            {
                experts[token, slot] = -1;
                weights[token, slot] = 0.0;
            }
        }
    }

    private static BigInteger Extreme(BigInteger[,] values, Func<BigInteger, BigInteger, BigInteger> pick)
    {
        var best = values[0, 0];
        foreach (var v in values)
        {
            best = pick(best, v);
        }
        return best;
    }

    internal static IEnumerable<double> Flatten(double[,] values)
    {
        foreach (double v in values)
        {
            yield return v;
        }
    }

    /// <summary>
    /// The residual network of a routing with exact integer costs: source 0, token i = 1 + i, expert e = 1 + N + e, sink.
    /// Arcs (cost): source -&gt; i if i has fewer than k experts, i -&gt; source if it has any (0); i -&gt; e if e is not chosen
    /// (-S_ie), e -&gt; i if it is (+S_ie); e -&gt; sink if load_e &lt; C, sink -&gt; e if load_e &gt; 0 (0).
    /// </summary>
    private sealed class ExactResidual(BigInteger[,] s, int k, int c)
    {
        private readonly int n = s.GetLength(0), e = s.GetLength(1);

        public int Source => 0;

        public int Sink => n + e + 1;

        public int Token(int i) => 1 + i;

        public int Expert(int j) => 1 + n + j;

        private int Nodes => n + e + 2;

        private List<(int From, int To, BigInteger Cost)> Arcs(bool[,] x)
        {
            var arcs = new List<(int, int, BigInteger)>();
            var count = new int[n];
            var load = new int[e];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    if (x[i, j])
                    {
                        count[i]++;
                        load[j]++;
                        arcs.Add((Expert(j), Token(i), s[i, j]));
                    }
                    else
                    {
                        arcs.Add((Token(i), Expert(j), -s[i, j]));
                    }
                }
            }
            for (int i = 0; i < n; i++)
            {
                if (count[i] < k)
                {
                    arcs.Add((Source, Token(i), BigInteger.Zero));
                }
                if (count[i] > 0)
                {
                    arcs.Add((Token(i), Source, BigInteger.Zero));
                }
            }
            for (int j = 0; j < e; j++)
            {
                if (load[j] < c)
                {
                    arcs.Add((Expert(j), Sink, BigInteger.Zero));
                }
                if (load[j] > 0)
                {
                    arcs.Add((Sink, Expert(j), BigInteger.Zero));
                }
            }
            return arcs;
        }

        /// <summary>
        /// Exact Bellman-Ford from a virtual root joined to every node v at cost start[v]. Returns the distances d (then
        /// d(v) &lt;= d(u) + cost on every residual arc) or, when a negative cycle exists, one such cycle as a node sequence
        /// (first node repeated at the end). The distances are integers that only decrease, so without a negative cycle the
        /// passes end; with one, the predecessor graph eventually holds a cycle, and every predecessor cycle is negative.
        /// </summary>
        public (BigInteger[]? Distances, List<int>? Cycle) ShortestDistancesOrNegativeCycle(bool[,] x, BigInteger[] start)
        {
            var arcs = Arcs(x);
            var d = (BigInteger[])start.Clone();
            var pred = new int[Nodes];
            Array.Fill(pred, -1);
            for (int pass = 1; ; pass++)
            {
                bool changed = false;
                foreach (var (from, to, cost) in arcs)
                {
                    if (d[from] + cost < d[to])
                    {
                        d[to] = d[from] + cost;
                        pred[to] = from;
                        changed = true;
                    }
                }
                if (!changed)
                {
                    return (d, null);
                }
                if (pass >= Nodes && PredecessorCycle(pred) is { } cycle)
                {
                    return (null, cycle);
                }
            }
        }

        private static List<int>? PredecessorCycle(int[] pred)
        {
            var state = new int[pred.Length]; // 0 new, 1 on the current walk, 2 finished
            for (int start = 0; start < pred.Length; start++)
            {
                var walk = new List<int>();
                int u = start;
                while (u >= 0 && state[u] == 0)
                {
                    state[u] = 1;
                    walk.Add(u);
                    u = pred[u];
                }
                if (u >= 0 && state[u] == 1)
                {
                    var cycle = new List<int> { u };
                    for (int w = pred[u]; w != u; w = pred[w])
                    {
                        cycle.Add(w);
                    }
                    cycle.Add(u);
                    cycle.Reverse(); // predecessor order runs backwards along the arcs
                    return cycle;
                }
                foreach (int p in walk)
                {
                    state[p] = 2;
                }
            }
            return null;
        }

        /// <summary>Pushes one unit around a residual cycle: a token-to-expert step chooses the expert, an expert-to-token step
        /// drops it (source and sink steps only follow from those).</summary>
        public void Cancel(bool[,] x, List<int> cycle)
        {
            for (int p = 0; p + 1 < cycle.Count; p++)
            {
                int u = cycle[p], v = cycle[p + 1];
                if (IsToken(u) && IsExpert(v))
                {
                    x[u - 1, v - 1 - n] = true;
                }
                else if (IsExpert(u) && IsToken(v))
                {
                    x[v - 1, u - 1 - n] = false;
                }
            }
        }

        private bool IsToken(int v) => v >= 1 && v <= n;

        private bool IsExpert(int v) => v > n && v <= n + e;
    }
}
