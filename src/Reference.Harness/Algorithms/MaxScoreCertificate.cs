// The MaxScore optimality certificate: the verdict records and the entry, Check, which runs the checks in order. The
// checks live beside this file, one idea each:
//   MaxScoreCertificate.Feasibility.cs     the problem (scores as exact integers), a candidate's membership and
//                                          feasibility (entries, loads, maximum flow), its exact total score
//   MaxScoreCertificate.ContractedGraph.cs optimality of the routing: the contracted residual graph, exact Bellman-Ford
//                                          (certifying potentials or a negative cycle), a cycle lifted to the best exchange
//   MaxScoreCertificate.Prices.cs          the reduced-cost conditions on prices: the exact dual bound and duality gap
//   MaxScoreCertificate.Grid.cs            the exact rational arithmetic: doubles as integers at one binary scale

using System.Numerics;

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
public static partial class MaxScoreCertificate
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
}
