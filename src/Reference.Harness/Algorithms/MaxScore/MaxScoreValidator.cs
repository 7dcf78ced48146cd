using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Numerics;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a <c>maxscore</c> candidate (proofs/tolerance.md, Definition: Many optima: feasibility, objective, certificate; proofs/maxscore.md,
/// section "Validation").
/// </summary>
/// <remarks>
/// <para><b>mode=exact.</b> <c>experts</c> pass when every row lists distinct experts by descending score (ties to the lower
/// index) with -1 only as trailing padding, and <see cref="MaxScoreCertificate"/> proves the routing feasible and optimal in exact
/// arithmetic; any optimal routing passes, and one that is a single ulp step worse fails. The report's max_abs is the score an
/// exchange cycle would gain. <c>load</c> must be the candidate's own experts' load (without experts: the reference's load);
/// <c>weights</c> S at the candidate's experts (normalized when asked) within the allclose preset of the candidate's precision;
/// <c>objective</c> the reference optimum within <see cref="ObjectivePolicy"/>. <c>prices</c> are informative (different
/// optimal prices exist): they pass when they are a certificate for the candidate's routing (or the reference's, without
/// experts) up to rounding: no sign violation and an exact duality gap at most the objective tolerance plus C sum|lambda| times
/// the same relative tolerance.</para>
/// <para><b>mode=two-stage.</b> Stage 1 is deterministic, so column 0 must equal the reference's; column 1 must fill exactly the
/// leftover slots and form a maximum-weight matching (its weight equal to the reference matching's within the objective
/// tolerance), so any optimal matching passes. <c>repeated</c> must count the candidate's own repeated rows; <c>load</c> is
/// C everywhere; <c>objective</c> and <c>gap</c> are determined by the matching weight and compared within the tolerance.</para>
/// </remarks>
public sealed class MaxScoreValidator : IValidator
{
    /// <summary>The relative tolerance for objectives: max(1e-9, 4 (N k + E + 1) u) for a candidate of unit roundoff u, relative
    /// to the sum of |S| over the reference's chosen cells.</summary>
    /// <param name="cells">N k, the number of summed scores.</param>
    /// <param name="experts">E.</param>
    /// <param name="format">The candidate's precision.</param>
    public static double ObjectiveTolerance(int cells, int experts, NumberFormat format) =>
        Math.Max(1e-9, 4.0 * (cells + experts + 1) * Precision.UnitRoundoff(format));

    /// <summary>λ of the probabilistic summation bound λ·sqrt(m - 1)·u·sum|terms| (Higham and Mary 2019), as for the
    /// auxiliary losses.</summary>
    public const double Lambda = 7.0;

    /// <summary>
    /// The tolerance for an objective (a sum of m chosen scores) or a gap (a difference of two such sums,
    /// <paramref name="sums"/> = 2) that a candidate reports in <paramref name="format"/> (proofs/maxscore.md, theorem
    /// maxscore.objective-running-bound). Float64: the a-priori max(1e-9, 4 (m + E + 1) u)·sum|terms| as before. Otherwise
    /// the candidate model of torch (<c>scores.gather(...).sum()</c>: the scores converted to float32, accumulated in
    /// float32, the result rounded to its format): atol = sums · (sum |t - fl32(t)| + the looser of twice the sequential
    /// float32 sum's error on these terms and λ·sqrt(m - 1)·u32·sum|t|) + subnormal floor, rtol = u_v (the result's rounding).
    /// </summary>
    /// <param name="terms">The scores the reference's optimum sums, in row order.</param>
    /// <param name="experts">E (for the float64 a-priori bound).</param>
    /// <param name="format">The precision the candidate's value carries.</param>
    /// <param name="sums">1 for an objective, 2 for a gap.</param>
    /// <returns>The allclose policy.</returns>
    public static AllClosePolicy ObjectivePolicy(IReadOnlyList<double> terms, int experts, NumberFormat format, int sums = 1)
    {
        ArgumentNullException.ThrowIfNull(terms);
        double magnitude = terms.Sum(Math.Abs);
        if (format == NumberFormat.Float64)
        {
            return new AllClosePolicy(ObjectiveTolerance(terms.Count, experts, format) * magnitude, 0.0);
        }
        double u32 = Precision.UnitRoundoff(NumberFormat.Float32), uv = Precision.UnitRoundoff(format);
        double input = 0, exact = 0, sequential = 0;
        foreach (double t in terms)
        {
            double t32 = Precision.Round(t, NumberFormat.Float32);
            input += Math.Abs(t - t32);
            exact += t32;
            sequential = Precision.Round(sequential + t32, NumberFormat.Float32);
        }
        double baseline = 2.0 * Math.Abs(sequential - exact);
        double probabilistic = Lambda * Math.Sqrt(Math.Max(0, terms.Count - 1)) * u32 * magnitude;
        double atol = sums * (input + Math.Max(baseline, probabilistic)) + 2.0 * uv * Precision.SmallestNormal(format);
        return new AllClosePolicy(atol, format == NumberFormat.Float32 ? u32 : uv);
    }

    /// <summary>Validates every maxscore output the candidate contains.</summary>
    /// <param name="context">The call, the reference's outputs and the candidate's.</param>
    /// <returns>One report per output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var scores = call.Matrix("scores");
        var options = MaxScoreAlgorithm.Options(call);
        int n = scores.GetLength(0), e = scores.GetLength(1), k = options.K;
        int c = MaxScore.CapacityFor(n, e, options);
        var referenceExperts = ToMatrix(context.Expected["experts"].ToDoubles(), n, k) ?? throw new InvalidOperationException("reference experts");
        double magnitude = 0;
        var terms = new List<double>();
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                magnitude += referenceExperts[i, j] >= 0 ? Math.Abs(scores[i, referenceExperts[i, j]]) : 0.0;
                if (referenceExperts[i, j] >= 0)
                {
                    terms.Add(scores[i, referenceExperts[i, j]]);
                }
            }
        }
        // The a-priori relative tolerance stays for the matching weight and the prices' duality gap (computed here in double).
        double rtol = ObjectiveTolerance(n * k, e, context.FormatOf("objective"));
        var objective = ObjectivePolicy(terms, e, context.FormatOf("objective"));
        return MaxScoreAlgorithm.Mode(call) == "exact"
            ? ValidateExact(context, scores, options, c, referenceExperts, rtol * magnitude, rtol, objective)
            : ValidateTwoStage(context, scores, options, rtol * magnitude, terms);
    }

    private static List<ComparisonReport> ValidateExact(
        CheckContext context, double[,] scores, MaxScoreOptions options, int c, int[,] referenceExperts, double atol, double rtol,
        AllClosePolicy objective)
    {
        int n = scores.GetLength(0), e = scores.GetLength(1), k = options.K;
        var candidate = context.Candidate;
        var reports = new List<ComparisonReport>();
        double[]? prices = candidate.TryGetValue("prices", out var p) ? p.ToDoubles() : null;
        int[,]? experts = candidate.TryGetValue("experts", out var x) ? ToMatrix(x.ToDoubles(), n, k) : null;
        bool usable = experts is not null && InRange(experts, e);

        // 1. experts: row format, then the exact certificate.
        MaxScoreCheck? check = null;
        if (candidate.ContainsKey("experts"))
        {
            string? format = experts is null ? "an entry is not an integer" : RowFormat(scores, experts);
            if (usable)
            {
                check = MaxScoreCertificate.Check(scores, k, c, experts!, prices);
            }
            bool passed = format is null && check is { Optimal: true };
            string detail = (format is null ? "" : $"row format: {format}; ") + (check?.Describe() ?? "entries out of range");
            reports.Add(Verdict("experts", "maxscore-certificate(exact)", (long)n * k, passed, check is { Feasible: true } ? check.Improvement : 0.0, detail));
        }
        var routing = usable && check is { Feasible: true } ? experts! : referenceExperts;

        // 2. load: the routing's own load.
        if (candidate.TryGetValue("load", out var l))
        {
            var want = usable ? LoadOf(experts!, e) : context.Expected["load"].ToDoubles();
            reports.Add(new ExactPolicy().Compare("load", l.ToDoubles(), want, [e]));
        }

        // 3. weights: S at the routing, normalized when asked.
        if (candidate.TryGetValue("weights", out var w))
        {
            reports.Add(RoutingSupport.WeightsReport("weights", w.ToDoubles(), WeightsOf(scores, usable ? experts! : referenceExperts, options.Normalize), [n, k], context.FormatOf("weights"), e + k,
                options.Normalize ? RowSumsOf(scores, usable ? experts! : referenceExperts) : null));
        }

        // 4. objective: the optimum within the tolerance.
        if (candidate.TryGetValue("objective", out var o))
        {
            reports.Add(objective.Compare("objective", o.ToDoubles(), context.Expected["objective"].ToDoubles(), []));
        }

        // 5. prices: a certificate up to rounding, for the candidate's routing when it is feasible, else the reference's.
        if (prices is not null)
        {
            var priceCheck = check is { Feasible: true } ? check.GivenPrices! : MaxScoreCertificate.Check(scores, k, c, routing, prices).GivenPrices!;
            double allowed = atol + rtol * c * prices.Sum(Math.Abs);
            bool passed = priceCheck.Problem is null && priceCheck.Gap <= allowed;
            string detail = $"duality gap {priceCheck.Gap:R} (allowed {allowed:R}){(priceCheck.Exact ? ", an exact certificate" : "")}"
                            + (priceCheck.Problem is null ? "" : $"; {priceCheck.Problem}");
            reports.Add(Verdict("prices", "maxscore-price-certificate", e, passed, double.IsFinite(priceCheck.Gap) ? priceCheck.Gap : 0.0, detail));
        }
        return reports;
    }

    private static List<ComparisonReport> ValidateTwoStage(CheckContext context, double[,] scores, MaxScoreOptions options, double atol,
        IReadOnlyList<double> terms)
    {
        int n = scores.GetLength(0), e = scores.GetLength(1);
        var candidate = context.Candidate;
        var reports = new List<ComparisonReport>();
        var reference = MaxScoreTwoStage.Route(scores, options);
        int c = MaxScore.CapacityFor(n, e, options);
        int[,]? experts = candidate.TryGetValue("experts", out var x) ? ToMatrix(x.ToDoubles(), n, 2) : null;
        bool usable = experts is not null && InRange(experts, e);

        // 1. experts: stage 1 as the reference's; stage 2 a perfect matching of the leftover slots of maximum weight.
        if (candidate.ContainsKey("experts"))
        {
            string? problem = usable ? null : "an entry is not an expert index";
            double weight = 0;
            if (usable)
            {
                var slots = new int[e];
                for (int i = 0; i < n; i++)
                {
                    int first = reference.Experts[i, 0], second = experts![i, 1];
                    if (experts[i, 0] != first)
                    {
                        problem ??= $"token {i}: stage-1 expert {experts[i, 0]}, the rule gives {first}";
                    }
                    slots[first]++;
                    slots[second]++;
                    weight += second == first ? 0.0 : scores[i, second];
                }
                for (int j = 0; j < e && problem is null; j++)
                {
                    if (slots[j] != c)
                    {
                        problem = $"expert {j} fills {slots[j]} slots, not C = {c}";
                    }
                }
                if (problem is null && Math.Abs(weight - reference.MatchingWeight) > atol)
                {
                    problem = $"stage-2 matching weight {weight:R}, the maximum is {reference.MatchingWeight:R}";
                }
            }
            reports.Add(Verdict("experts", "maxscore-two-stage(matching)", (long)n * 2, problem is null,
                usable ? Math.Abs(weight - reference.MatchingWeight) : 0.0, problem ?? "stage 1 reproduced, stage 2 a maximum-weight matching"));
        }
        var routing = usable ? experts! : reference.Experts;

        // 2. repeated: the routing's own count.
        if (candidate.TryGetValue("repeated", out var r))
        {
            int count = 0;
            for (int i = 0; i < n; i++)
            {
                count += routing[i, 0] == routing[i, 1] ? 1 : 0;
            }
            reports.Add(new ExactPolicy().Compare("repeated", r.ToDoubles(), [count], []));
        }
        if (candidate.TryGetValue("load", out var l))
        {
            reports.Add(new ExactPolicy().Compare("load", l.ToDoubles(), context.Expected["load"].ToDoubles(), [e]));
        }
        if (candidate.TryGetValue("weights", out var w))
        {
            reports.Add(RoutingSupport.WeightsReport("weights", w.ToDoubles(), WeightsOf(scores, routing, options.Normalize), [n, 2], context.FormatOf("weights"), e + 2,
                options.Normalize ? RowSumsOf(scores, routing) : null));
        }
        foreach (var name in new[] { "objective", "gap" })
        {
            if (candidate.TryGetValue(name, out var v))
            {
                var policy = ObjectivePolicy(terms, scores.GetLength(1), context.FormatOf(name), name == "gap" ? 2 : 1);
                reports.Add(policy.Compare(name, v.ToDoubles(), context.Expected[name].ToDoubles(), []));
            }
        }
        return reports;
    }

    /// <summary>A pass/fail report for a check that is not elementwise.</summary>
    internal static ComparisonReport Verdict(string array, string policy, long count, bool passed, double maxAbs, string detail) => new()
    {
        ArrayName = array,
        PolicyName = policy,
        Count = count,
        MismatchCount = passed ? 0 : 1,
        MaxAbsError = maxAbs,
        Detail = detail,
    };

    /// <summary>A flat [rows * cols] array of integral doubles as an int matrix, or null when an entry is not an int.</summary>
    internal static int[,]? ToMatrix(double[] flat, int rows, int cols)
    {
        var m = new int[rows, cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                double v = flat[i * cols + j];
                if (v != Math.Floor(v) || v < int.MinValue || v > int.MaxValue)
                {
                    return null;
                }
                m[i, j] = (int)v;
            }
        }
        return m;
    }

    /// <summary>True when every entry is -1 or an expert index.</summary>
    internal static bool InRange(int[,]? experts, int e)
    {
        if (experts is null)
        {
            return false;
        }
        foreach (int v in experts)
        {
            if (v < -1 || v >= e)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The first row that is not distinct experts by descending score (ties to the lower index) then -1 padding.</summary>
    private static string? RowFormat(double[,] scores, int[,] experts)
    {
        int n = experts.GetLength(0), k = experts.GetLength(1), e = scores.GetLength(1);
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j + 1 < k; j++)
            {
                int a = experts[i, j], b = experts[i, j + 1];
                if (a == -1 && b != -1)
                {
                    return $"token {i}: -1 before an expert";
                }
                if (a >= 0 && a < e && b >= 0 && b < e && !Ranking.RanksBefore(scores[i, a], a, scores[i, b], b))
                {
                    return $"token {i}: experts {a}, {b} not in descending score order (ties to the lower index)";
                }
            }
        }
        return null;
    }

    private static double[] LoadOf(int[,] experts, int e)
    {
        var load = new double[e];
        foreach (int v in experts)
        {
            if (v >= 0)
            {
                load[v]++;
            }
        }
        return load;
    }

    /// <summary>S at each listed expert (0 at padding), divided by the row sum when asked and that sum is not 0.</summary>
    internal static double[] WeightsOf(double[,] scores, int[,] experts, bool normalize)
    {
        int n = experts.GetLength(0), k = experts.GetLength(1);
        var w = new double[n * k];
        var sums = RowSumsOf(scores, experts);
        for (int i = 0; i < n; i++)
        {
            double sum = sums[i];
            for (int j = 0; j < k; j++)
            {
                double v = experts[i, j] >= 0 ? scores[i, experts[i, j]] : 0.0;
                w[i * k + j] = normalize && sum != 0 ? v / sum : v;
            }
        }
        return w;
    }

    /// <summary>Per token, the sum of S at its routed experts (-1 entries skipped): what its weights renormalize.</summary>
    internal static double[] RowSumsOf(double[,] scores, int[,] experts)
    {
        int n = experts.GetLength(0), k = experts.GetLength(1);
        var sums = new double[n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                sums[i] += experts[i, j] >= 0 ? scores[i, experts[i, j]] : 0.0;
            }
        }
        return sums;
    }
}
