using Reference.Flow;
using Reference.Kernels.Flow;

namespace Reference.Kernels.Routing;

/// <summary>A MaxScore routing found by OR-Tools.</summary>
/// <param name="Experts">[N * k] each token's experts in ascending index order, -1 padded.</param>
/// <param name="Load">[E] tokens per expert.</param>
/// <param name="ScaleExponent">q: the integer costs were -round(S 2^q).</param>
/// <param name="ScaledCost">OR-Tools' optimal cost at that scale (exact, from the flows).</param>
public sealed record OrToolsMaxScoreResult(int[] Experts, int[] Load, int ScaleExponent, long ScaledCost);

/// <summary>
/// MaxScore (proofs/maxscore.md, Definition) through OR-Tools' SimpleMinCostFlow (<see cref="OrToolsMinCostFlow"/>), on the network
/// of proofs/maxscore.md, Definition: Exact routing: source -&gt; token i (capacity k), token i -&gt; expert e (capacity 1, cost -round(S_ie 2^q)), expert e -&gt;
/// sink (capacity C); supply F = min(k N, C E) at the source, demand F at the sink.
/// <para><b>Cost scale.</b> OR-Tools needs int64 costs, so the double scores are scaled by 2^q and rounded. By default q puts
/// max|S| 2^q just below 2^40 (<see cref="TargetCostBits"/>): measured on skewed softmax routers at 16384/64/8, 2^40 loses
/// nothing of the objective while a scale of 1e3 loses 0.95 of it, and 2^52 is refused (BAD_COST_RANGE). q is lowered when
/// needed so that OR-Tools' range check ((max|c| + 1)(n' + 1) within int64, n' = N + E + 4 nodes with its own super nodes)
/// and the total cost F max|c| both stay below 2^62 (<see cref="MaxScaleExponent"/>). Rounding can in principle make a
/// routing optimal for the rounded costs but not for the scores (two scores closer than 2^-q); the caller proves the answer
/// with the exact certificate and can retry at <see cref="MaxScaleExponent"/>.</para>
/// </summary>
public static class OrToolsMaxScore
{
    /// <summary>The default cost magnitude: max|S| 2^q is below 2^40.</summary>
    public const int TargetCostBits = 40;

    /// <summary>The largest q the int64 ranges allow for these scores and sizes (see the class remarks).</summary>
    /// <param name="maxAbsScore">max |S_ie| &gt; 0.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="flow">F = min(k N, C E).</param>
    /// <returns>q with max|S| 2^q &lt;= 2^62 / max(N + E + 6, F + 1).</returns>
    public static int MaxScaleExponent(double maxAbsScore, int tokens, int experts, long flow)
    {
        double budget = Math.Pow(2, 62) / Math.Max((double)tokens + experts + 6, flow + 1.0);
        int q = (int)Math.Floor(Math.Log2(budget / maxAbsScore));
        while (Math.ScaleB(maxAbsScore, q) > budget) q--;
        while (Math.ScaleB(maxAbsScore, q + 1) <= budget) q++;
        return q;
    }

    /// <summary>The default q: max|S| 2^q just below 2^<see cref="TargetCostBits"/>, capped by <see cref="MaxScaleExponent"/>.</summary>
    /// <param name="maxAbsScore">max |S_ie| &gt; 0.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="flow">F = min(k N, C E).</param>
    /// <returns>q.</returns>
    public static int DefaultScaleExponent(double maxAbsScore, int tokens, int experts, long flow) =>
        Math.Min(TargetCostBits - (Math.ILogB(maxAbsScore) + 1), MaxScaleExponent(maxAbsScore, tokens, experts, flow));

    /// <summary>Routes with OR-Tools.</summary>
    /// <param name="scores">S [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E &gt;= 1.</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <param name="capacity">C &gt;= 0.</param>
    /// <param name="scaleExponent">q, or null for <see cref="DefaultScaleExponent"/>; at most <see cref="MaxScaleExponent"/>.</param>
    /// <returns>The routing (a maximum flow, of maximum rounded score).</returns>
    /// <exception cref="ArgumentException">Shapes, k, C or a score out of range, or q above the maximum.</exception>
    /// <exception cref="OrToolsRefusedException">OR-Tools refused the problem.</exception>
    /// <exception cref="InvalidOperationException">OR-Tools answered a status other than optimal.</exception>
    public static OrToolsMaxScoreResult Solve(double[] scores, int tokens, int experts, int k, int capacity, int? scaleExponent = null)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int n = tokens, e = experts;
        if (n < 0 || e < 1) throw new ArgumentException($"N = {n}, E = {e}: need N >= 0 and E >= 1");
        if (scores.Length != (long)n * e) throw new ArgumentException($"scores has {scores.Length} entries, N E = {(long)n * e}", nameof(scores));
        if (k < 1 || k > e) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be in 1..{e}");
        if (capacity < 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "capacity must be >= 0");
        double maxAbs = 0;
        foreach (double s in scores)
        {
            if (!double.IsFinite(s)) throw new ArgumentException("a score is not finite", nameof(scores));
            maxAbs = Math.Max(maxAbs, Math.Abs(s));
        }
        long flow = Math.Min((long)k * n, (long)capacity * e);
        int q = 0;
        if (maxAbs > 0)
        {
            int most = MaxScaleExponent(maxAbs, n, e, flow);
            q = scaleExponent ?? DefaultScaleExponent(maxAbs, n, e, flow);
            if (q > most) throw new ArgumentOutOfRangeException(nameof(scaleExponent), q, $"the int64 ranges allow q <= {most} here");
        }

        // Nodes: 0 source, 1..N tokens, N+1..N+E experts, N+E+1 sink. Arcs: source->token, token->expert (row-major), expert->sink.
        int nodes = n + e + 2, sink = n + e + 1, m = n + n * e + e;
        var tails = new int[m];
        var heads = new int[m];
        var caps = new long[m];
        var costs = new long[m];
        int a = 0;
        for (int i = 0; i < n; i++, a++)
        {
            tails[a] = 0; heads[a] = 1 + i; caps[a] = k;
        }
        for (int i = 0; i < n; i++)
        {
            for (int x = 0; x < e; x++, a++)
            {
                tails[a] = 1 + i; heads[a] = 1 + n + x; caps[a] = 1;
                costs[a] = -(long)Math.Round(Math.ScaleB(scores[i * e + x], q), MidpointRounding.ToEven);
            }
        }
        for (int x = 0; x < e; x++, a++)
        {
            tails[a] = 1 + n + x; heads[a] = sink; caps[a] = capacity;
        }
        var supplies = new long[nodes];
        supplies[0] = flow;
        supplies[sink] = -flow;
        var answer = OrToolsMinCostFlow.Solve(new FlowProblem(nodes, tails, heads, caps, costs, supplies));
        if (answer.Status != MinCostFlowStatus.Optimal)
            throw new InvalidOperationException($"OR-Tools answered {answer.Status} on the MaxScore network (N = {n}, E = {e}, k = {k}, C = {capacity}, q = {q})");

        var routed = new int[n * k];
        Array.Fill(routed, -1);
        var load = new int[e];
        for (int i = 0; i < n; i++)
        {
            int j = 0;
            for (int x = 0; x < e; x++)
            {
                if (answer.Flows[n + i * e + x] > 0)
                {
                    routed[i * k + j++] = x;
                    load[x]++;
                }
            }
        }
        return new OrToolsMaxScoreResult(routed, load, q, answer.Cost);
    }
}
