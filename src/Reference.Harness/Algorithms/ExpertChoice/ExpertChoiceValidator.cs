using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a candidate expert-choice routing directly against the logits (proofs/tolerance.md, Definition: Decisions and near-ties): where two tokens' scores
/// for an expert are equal or within the candidate's rounding error, either order passes.
/// </summary>
/// <remarks>
/// For every expert x the candidate's column tokens[x, :] must hold C distinct tokens in 0..N-1, in descending order of P_ix,
/// with no unchosen token above the weakest chosen one; each comparison of P_ax with P_bx allows ε_ax + ε_bx, where
/// ε_ix = (|X_ix - max_e X_ie| + E + 4)·u·P_ix + t bounds the candidate's error in one softmax score relative to that
/// score (t, the format's smallest normal number, covers subnormal results); proofs/expert-choice.md.
/// The count, when given, must be what the candidate's own tokens imply.
/// </remarks>
public sealed class ExpertChoiceValidator : IValidator
{
    /// <summary>Judges the candidate with <see cref="Check(double[,], ExpertChoiceOptions, int[,], int[], NumberFormat, ExpertChoiceResult)"/>: a candidate without tokens is judged with the reference's tokens as its choice.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of tokens, gates and count that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var c = context.Candidate;
        var tokens = c.TryGetValue("tokens", out var t) ? t : context.Expected["tokens"];
        var check = Check(
            call.Matrix("logits"), ExpertChoiceAlgorithm.Options(call), IntMatrix(tokens), c.TryGetValue("count", out var cnt) ? IntVector(cnt) : null, context.Format,
            ExpertChoiceAlgorithm.OracleResult(call));
        var reports = new List<ComparisonReport>();
        foreach (var name in new[] { "tokens", "count" })
        {
            if (c.TryGetValue(name, out var array))
            {
                reports.Add(IndexReport(name, array, context.Expected[name], check));
            }
        }
        if (c.TryGetValue("gates", out var g))
        {
            reports.Add(FloatReport("gates", g, context.Expected["gates"], check, context.FormatOf("gates"), call.Array("logits").Shape[1]));
        }
        return reports;
    }

    /// <summary>Validates a candidate expert-choice routing.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">The options the candidate claims to implement.</param>
    /// <param name="tokens">The candidate's tokens [E, C].</param>
    /// <param name="count">The candidate's count [N], or null.</param>
    /// <param name="format">The candidate's precision.</param>
    /// <returns>The problems found and the gates [E, C] the candidate's tokens imply.</returns>
    public static RoutingCheck Check(double[,] logits, ExpertChoiceOptions options, int[,] tokens, int[]? count, NumberFormat format)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tokens);
        return Check(logits, options, tokens, count, format, ExpertChoice.Route(logits, options)); // validates the arguments
    }

    /// <summary>Validates a candidate expert-choice routing, given the reference's routing of the same logits and options
    /// (its C and its scores P; the check path computes them once, for the reference's outputs and for this).</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">The options the candidate claims to implement.</param>
    /// <param name="tokens">The candidate's tokens [E, C].</param>
    /// <param name="count">The candidate's count [N], or null.</param>
    /// <param name="format">The candidate's precision.</param>
    /// <param name="reference"><see cref="ExpertChoice.Route"/> of <paramref name="logits"/> and <paramref name="options"/>.</param>
    /// <returns>The problems found and the gates [E, C] the candidate's tokens imply.</returns>
    public static RoutingCheck Check(
        double[,] logits, ExpertChoiceOptions options, int[,] tokens, int[]? count, NumberFormat format, ExpertChoiceResult reference)
    {
        ArgumentNullException.ThrowIfNull(logits);
        double unitRoundoff = Precision.UnitRoundoff(format), tiny = Precision.SmallestNormal(format);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(reference);
        int n = logits.GetLength(0), e = logits.GetLength(1);
        int c = reference.Capacity;
        var problems = new List<string>();
        var gates = new double[e, c];
        if (tokens.GetLength(0) != e || tokens.GetLength(1) != c)
        {
            problems.Add($"tokens has shape [{tokens.GetLength(0)}, {tokens.GetLength(1)}], not [E, C] = [{e}, {c}]");
            return new RoutingCheck(problems, gates);
        }
        var p = reference.Scores ?? RouterScores.Compute(logits, ScoreFunction.Softmax);
        // ε_ix = (|X_ix - m_i| + E + 4)·u·P_ix + t: the candidate's error in one softmax score, relative to the score itself
        // (the exponent's argument carries |X - m|·u, the sum (E - 1)·u, exp and division one rounding each), plus the
        // smallest normal number t for subnormal results.
        // Stored per expert ([E, N], column x at x N): the loops below read one expert's tokens at a time.
        var eps = new double[(long)e * n];
        var pt = new double[(long)e * n];
        for (int i = 0; i < n; i++)
        {
            double m = double.NegativeInfinity;
            for (int x = 0; x < e; x++)
            {
                m = Math.Max(m, logits[i, x]);
            }
            for (int x = 0; x < e; x++)
            {
                pt[(long)x * n + i] = p[i, x];
                eps[(long)x * n + i] = (Math.Abs(logits[i, x] - m) + e + 4) * unitRoundoff * p[i, x] + tiny;
            }
        }

        var implied = new int[n];
        for (int x = 0; x < e && problems.Count < 20; x++)
        {
            var px = pt.AsSpan(x * n, n); // P[:, x]
            var ex = eps.AsSpan(x * n, n); // eps[:, x]
            var chosen = new bool[n];
            bool ok = true;
            for (int s = 0; s < c; s++)
            {
                int t = tokens[x, s];
                if (t < 0 || t >= n || chosen[t])
                {
                    problems.Add($"tokens[{x}, {s}] = {t} is {(t < 0 || t >= n ? $"outside 0..{n - 1}" : "repeated")}");
                    ok = false;
                    break;
                }
                chosen[t] = true;
                implied[t]++;
                gates[x, s] = px[t];
                if (s > 0)
                {
                    int a = tokens[x, s - 1];
                    if (px[t] - ex[t] > px[a] + ex[a])
                    {
                        problems.Add($"expert {x}: token {t} (P = {px[t]}) is listed after token {a} (P = {px[a]})");
                        ok = false;
                    }
                }
            }
            if (!ok || c == 0)
            {
                continue;
            }
            double weakestHigh = double.PositiveInfinity;
            for (int s = 0; s < c; s++)
            {
                int t = tokens[x, s];
                weakestHigh = Math.Min(weakestHigh, px[t] + ex[t]);
            }
            for (int t = 0; t < n; t++)
            {
                if (!chosen[t] && px[t] - ex[t] > weakestHigh)
                {
                    problems.Add($"expert {x}: unchosen token {t} (P = {px[t]}) beats a chosen one");
                    break;
                }
            }
        }
        if (count is not null)
        {
            if (count.Length != n)
            {
                problems.Add($"count has length {count.Length}, not N = {n}");
            }
            else if (problems.Count == 0)
            {
                for (int i = 0; i < n; i++)
                {
                    if (count[i] != implied[i])
                    {
                        problems.Add($"count[{i}] = {count[i]} but the tokens list token {i} {implied[i]} times");
                        break;
                    }
                }
            }
        }
        return new RoutingCheck(problems, gates);
    }
}
