using Reference.Attention;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>A derived bound on the error of attention's two outputs, with the input magnitudes it was derived from.</summary>
/// <param name="Out">The bound on max |out - exact out|.</param>
/// <param name="Lse">The bound on max |lse - exact lse| over the rows with an allowed key.</param>
/// <param name="S1">|scale| max_{b,h,i,j} sum_d |q[b,h,i,d] k[b,g(h),j,d]|, a bound on every |score| before softcap.</param>
/// <param name="V">max |v|.</param>
public sealed record AttentionErrorBound(double Out, double Lse, double S1, double V);

/// <summary>
/// How the registry judges the float outputs <c>out</c> and <c>lse</c> of the attention family (proofs/tolerance.md,
/// Definition: Float tolerances by family; proofs/attention.md, "How the registry judges out and lse"), each array in its own
/// precision (<see cref="CheckContext.FormatOf"/>):
/// <list type="bullet">
/// <item>float32, float16, bfloat16: the calibrated baseline rule <c>baseline(format, factor)</c>: the candidate
/// passes iff max |cand - ref64| &lt;= factor * max |base - ref64| + floor, where base is the same attention computed
/// naively in the candidate's precision the way real kernels do (<see cref="AttentionBaseline"/>: plain float32
/// arithmetic, or float32 accumulation of float16/bfloat16 products) and floor is twice the representation error of
/// the reference in the format. The factors (<see cref="Factor32"/>, <see cref="FactorLow"/>) were chosen by
/// measurement over independent computation orders (proofs/attention.md, attention.baseline-calibration).</item>
/// <item>float64: the a-priori forward error bound of theorem attention.kernel-matches-reference for the worst
/// tiling (<see cref="Derived"/>), applied as <c>allclose(atol = bound, rtol = 0)</c>: a float64 baseline would be the
/// reference itself (bound 0), and the derived bound is far below any realistic defect at u = 2^-53.</item>
/// </list>
/// Every report's Detail names the rule and its numbers (base_error, floor, factor, the baseline's kind).
/// </summary>
/// <remarks>
/// Reason: an a-priori worst-case bound grows like n u max|v| and at T = 2048 is about 50,000 times a float32
/// kernel's real error, so a 1% error of the softmax scale passed; a baseline that rounds after every operation in
/// float16 accumulates T roundings of the format in its sums, which no real kernel does, and let a 1% scale error
/// pass as well. The calibrated baseline measures the error a correct kernel has on the very inputs under test.
/// </remarks>
public static class AttentionTolerance
{
    /// <summary>The accuracy assumed for exp, log and tanh, in units of the unit roundoff (proofs/attention.md: F = 4).</summary>
    public const double FunctionUlps = 4.0;

    /// <summary>
    /// The forward error bound of attention evaluated in <paramref name="format"/> with <paramref name="keyTiles"/> key tiles
    /// of the online softmax (1 for the two-pass computation), from theorem attention.kernel-matches-reference:
    /// <code>
    /// d_s   = (D + 3) u S1  [+ u S1 + (F + 1) u c with softcap c]  [+ 3 u S1 when q, k are rounded to the format]
    /// eps   = 2 d_s + 4 u S1 + (F + 1) u + t (F + 3) u
    /// E_out = V (2 eps / (1 - eps) + (3n + 3t + 1) u) + n tiny V  [+ u V when v is rounded]
    /// E_lse = d_s + eps_L / (1 - eps_L) + (F + 1) u ln n + u (S1 + ln n),   eps_L = eps + (n + t) u
    /// </code>
    /// with n = Tk, t = keyTiles, u the unit roundoff, tiny the smallest subnormal of the format. With S = splits &gt; 1
    /// the partial results of S key groups merged by their lse (split-KV) add, per theorem attention.split-kv-combine,
    /// <code>
    /// eps_W  = 2 E_lse + 2 u (S1 + ln n) + (F + 1) u
    /// E_out' = E_out (1 + S u) + V (2 eps_W / (1 - eps_W) + (S + 2) u)
    /// E_lse' = E_lse + eps_W / (1 - eps_W) + S u + (F + 1) u ln S + u (S1 + ln n)
    /// </code>
    /// A bound with eps, eps_L or eps_W &gt;= 1 is vacuous and returned as +Infinity.
    /// </summary>
    /// <param name="q">Queries [B, Hq, Tq, D].</param>
    /// <param name="k">Keys [B, Hkv, Tk, D].</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv].</param>
    /// <param name="scale">The score scale.</param>
    /// <param name="softcap">The softcap c (0 = none).</param>
    /// <param name="format">The precision of the computation.</param>
    /// <param name="keyTiles">The number of key tiles t, &gt;= 1.</param>
    /// <param name="splits">The number of key groups S merged by lse, &gt;= 1 (1: no merge).</param>
    /// <param name="roundedInputs">True when q, k, v are first rounded to <paramref name="format"/> (adds their rounding).</param>
    /// <returns>The bound on out and lse, with S1 and V.</returns>
    public static AttentionErrorBound Derived(double[,,,] q, double[,,,] k, double[,,,] v, double scale, double softcap,
                                              NumberFormat format, int keyTiles, int splits, bool roundedInputs)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        double u = Precision.UnitRoundoff(format), f = FunctionUlps;
        double tiny = Precision.SmallestNormal(format) * Precision.Epsilon(format);
        var (s1, vmax) = Magnitudes(q, k, v, scale);
        double d = q.GetLength(3), n = Math.Max(1, k.GetLength(2)), t = Math.Max(1, keyTiles);

        // 1. One score: the dot product, the scale, the softcap, the rounding of q and k.
        double ds = (d + 3.0) * u * s1
                    + (softcap > 0 ? u * s1 + (f + 1.0) * u * softcap : 0.0)
                    + (roundedInputs ? 3.0 * u * s1 : 0.0);
        // 2. The relative error of one unnormalized weight.
        double eps = 2.0 * ds + 4.0 * u * s1 + (f + 1.0) * u + t * (f + 3.0) * u;
        if (!(eps < 1.0))
        {
            return new AttentionErrorBound(double.PositiveInfinity, double.PositiveInfinity, s1, vmax);
        }
        // 3. Normalization lemma, sums and the division; underflowed weights; the rounding of v.
        double outBound = vmax * (2.0 * eps / (1.0 - eps) + (3.0 * n + 3.0 * t + 1.0) * u) + n * tiny * vmax
                          + (roundedInputs ? u * vmax : 0.0);
        // 4. lse = m + ln l.
        double epsL = eps + (n + t) * u;
        double lseBound = epsL < 1.0
            ? ds + epsL / (1.0 - epsL) + (f + 1.0) * u * Math.Log(n) + u * (s1 + Math.Log(n))
            : double.PositiveInfinity;
        if (splits <= 1 || !double.IsFinite(lseBound))
        {
            return new AttentionErrorBound(outBound, lseBound, s1, vmax);
        }

        // 5. The merge of S partial results by their lse.
        double sp = splits;
        double epsW = 2.0 * lseBound + 2.0 * u * (s1 + Math.Log(n)) + (f + 1.0) * u;
        if (!(epsW < 1.0))
        {
            return new AttentionErrorBound(double.PositiveInfinity, double.PositiveInfinity, s1, vmax);
        }
        return new AttentionErrorBound(
            outBound * (1.0 + sp * u) + vmax * (2.0 * epsW / (1.0 - epsW) + (sp + 2.0) * u),
            lseBound + epsW / (1.0 - epsW) + sp * u + (f + 1.0) * u * Math.Log(sp) + u * (s1 + Math.Log(n)),
            s1, vmax);
    }

    /// <summary>The factor of the baseline rule for float32 candidates (measured: proofs/attention.md,
    /// attention.baseline-calibration).</summary>
    public const double Factor32 = 3.0;

    /// <summary>The factor of the baseline rule for float16 and bfloat16 candidates (measured, as for
    /// <see cref="Factor32"/>).</summary>
    public const double FactorLow = 2.0;

    /// <summary>The baseline factor for a candidate precision: <see cref="Factor32"/> for float32 (and float64),
    /// <see cref="FactorLow"/> for float16 and bfloat16.</summary>
    /// <param name="format">The candidate's precision.</param>
    /// <returns>The factor.</returns>
    public static double Factor(NumberFormat format) =>
        format is NumberFormat.Float16 or NumberFormat.BFloat16 ? FactorLow : Factor32;

    /// <summary>The lse rounding floor's multiple of u_f32 |scale| sum_d |q_d k_d| over the rows' largest scores (see
    /// <see cref="CompareToBaseline"/>).</summary>
    public const double ScoreFloorUlps = 2.0;

    /// <summary>The lse rounding floor's multiple of u_f32 max |lse|: ln and the final addition (F + 1 = 5, with
    /// F = <see cref="FunctionUlps"/>).</summary>
    public const double LseFloorUlps = FunctionUlps + 1.0;

    /// <summary>The out rounding floor's multiple of u_f32 max |v|: the division by l and the last roundings of the
    /// weighted sum, each relative to max |v| (the weights sum to 1).</summary>
    public const double OutFloorUlps = 4.0;

    /// <summary>The out rounding floor's multiple of u_f32 max |lse| max |v|: a split-KV (flash-decoding) candidate
    /// stores each partial lse_s in float32 (error u |lse_s|) and weighs its partial out by exp(lse_s - M), so each
    /// weight is off by up to 2 u max |lse| relatively and out by that times max_s |o_s - out| &lt;= 2 max |v|
    /// (proofs/attention.md, attention.baseline-calibration; the naive baseline makes no such rounding).</summary>
    public const double MergeFloorUlps = 4.0;

    /// <summary>
    /// Judges one float output by the calibrated baseline rule <c>baseline(format, factor)</c>:
    /// max |cand - ref64| &lt;= factor * base_error + floor + rounding_floor, where base_error is the largest error of
    /// the given naive orders, max over orders o and elements i of |base_o[i] - ref64[i]|, floor is
    /// <see cref="BaselinePolicy.Floor"/> (twice the representation error of ref64 in the format), and rounding_floor
    /// is <paramref name="scoreFloor"/>: the few float32 roundings every correct kernel makes at the end of the
    /// computation, which a naive order may by chance not make (see <see cref="Baselines"/>). The factor covers
    /// errors that grow with the problem; the rounding floor covers small problems.
    /// </summary>
    /// <param name="name">The output's name.</param>
    /// <param name="format">The candidate's precision for this array.</param>
    /// <param name="candidate">The candidate's values, flat.</param>
    /// <param name="expected">The float64 reference, flat, same length.</param>
    /// <param name="baselines">The naive computations in <paramref name="format"/> (one per order), flat, same length.</param>
    /// <param name="shape">The array's shape.</param>
    /// <param name="kind">The baseline's kind, for the Detail.</param>
    /// <param name="scoreFloor">The rounding floor, &gt;= 0.</param>
    /// <returns>The report (Margin set, Detail with kind, factor, base_error, floor, rounding_floor and bound). A float64
    /// candidate is judged by <see cref="AllClosePolicy.For"/> instead (its baseline would be the reference).</returns>
    public static ComparisonReport CompareToBaseline(string name, NumberFormat format, double[] candidate, double[] expected,
                                                     IReadOnlyList<double[]> baselines, IReadOnlyList<int> shape, string kind,
                                                     double scoreFloor = 0.0)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(baselines);
        if (format == NumberFormat.Float64)
        {
            // A float64 baseline would be the reference itself (bound 0); float64 candidates get the float64 preset.
            var preset = AllClosePolicy.For(format).Compare(name, candidate, expected, shape);
            return preset with { Detail = "float64 candidate: allclose preset (a float64 baseline is the reference itself)" };
        }
        double factor = Factor(format);
        var policy = new BaselinePolicy(format, factor);
        double baseError = 0.0;
        foreach (var b in baselines) baseError = Math.Max(baseError, BaselinePolicy.BaseError(expected, b));
        double floor = policy.Floor(expected);
        double extra = double.IsFinite(scoreFloor) ? scoreFloor : 0.0;
        double bound = factor * baseError + floor + extra;
        string detail = $"baseline={kind} orders={baselines.Count} factor={ComparisonReport.Number(factor)} "
                        + $"base_error={ComparisonReport.Number(baseError)} floor={ComparisonReport.Number(floor)} "
                        + $"rounding_floor={ComparisonReport.Number(extra)} bound={ComparisonReport.Number(bound)}";
        return Elementwise.Compare(name, policy.Name, candidate, expected, shape,
            (_, c, r) => Math.Abs(c - r) > bound, detail, (_, _) => bound);
    }

    /// <summary>
    /// The baseline of attention in both naive orders, and the rounding floors (u = u_f32: every precision
    /// accumulates in float32): out: <see cref="OutFloorUlps"/> u max |v| plus <see cref="MergeFloorUlps"/> u max |lse|
    /// max |v| (a split-KV merge); lse: <see cref="ScoreFloorUlps"/> u
    /// max over rows of |scale| sum_d |q_d k_jd| for the row's largest score (the rounding scale of that score's dot
    /// product, whose error lse inherits undiminished) plus <see cref="LseFloorUlps"/> u max |lse| (ln and the sum)
    /// plus <see cref="FunctionUlps"/> u (l's relative error from its exps, absolute in ln l).
    /// </summary>
    internal static (double[][] Out, double[][] Lse, double OutFloor, double LseFloor) Baselines(
        double[,,,] q, double[,,,] k, double[,,,] v, double scale, double softcap, AttentionRowKeys rows,
        double[,,,]? keyAlt, NumberFormat format)
    {
        // Beyond FastReference.AttentionWork both orders come from the fast pass, equal bit for bit
        // (proofs/attention.md, attention.fast-baseline-identical).
        long work = FastReference.AttentionWorkOf(
            [q.GetLength(0), q.GetLength(1), q.GetLength(2), q.GetLength(3)], [k.GetLength(0), k.GetLength(1), k.GetLength(2), k.GetLength(3)],
            [v.GetLength(0), v.GetLength(1), v.GetLength(2), v.GetLength(3)]);
        var (a, b) = FastReference.Beyond(work, FastReference.AttentionWork)
            ? AttentionBaselineFast.ComputeBoth(q, k, v, scale, softcap, rows, keyAlt, format)
            : (AttentionBaseline.Compute(q, k, v, scale, softcap, rows, keyAlt, format, 0),
               AttentionBaseline.Compute(q, k, v, scale, softcap, rows, keyAlt, format, 1));
        double u = Precision.UnitRoundoff(NumberFormat.Float32), vmax = 0.0, smax = 0.0, lmax = 0.0;
        foreach (double x in v) vmax = Math.Max(vmax, Math.Abs(x));
        foreach (double x in a.MaxScoreMagnitude) smax = Math.Max(smax, x);
        foreach (double x in a.Lse) if (double.IsFinite(x)) lmax = Math.Max(lmax, Math.Abs(x));
        // lse: ln l inherits l's relative error from its exps (FunctionUlps u) as an absolute error, whatever |lse|.
        return ([a.Out, b.Out], [a.Lse, b.Lse], OutFloorUlps * u * vmax + MergeFloorUlps * u * lmax * vmax,
                ScoreFloorUlps * u * smax + LseFloorUlps * u * lmax + FunctionUlps * u);
    }

    /// <summary>
    /// Judges the candidate's <c>out</c> and <c>lse</c> (those it contains) by the rules in the class summary.
    /// </summary>
    /// <param name="context">The check: call, reference outputs (f64), candidate outputs, candidate formats.</param>
    /// <param name="q">The queries as given [B, Hq, Tq, D].</param>
    /// <param name="k">The keys as given [B, Hkv, Tk, D].</param>
    /// <param name="v">The values as given [B, Hkv, Tk, Dv].</param>
    /// <param name="scale">The resolved scale.</param>
    /// <param name="softcap">The softcap (0 = none).</param>
    /// <param name="rows">The keys each row attends (the same set as the reference's).</param>
    /// <param name="keyAlt">Alternative keys for rows' kind-2 keys (LeanK's pruned channels), or null.</param>
    /// <returns>One report for each of out and lse in the candidate.</returns>
    public static IReadOnlyList<ComparisonReport> Compare(
        CheckContext context, double[,,,] q, double[,,,] k, double[,,,] v, double scale, double softcap,
        AttentionRowKeys rows, double[,,,]? keyAlt = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(rows);
        var names = new[] { "out", "lse" }.Where(context.Candidate.ContainsKey).ToList();
        var reports = new List<ComparisonReport>();
        var baselines = new Dictionary<NumberFormat, (double[][] Out, double[][] Lse, double OutFloor, double LseFloor)>();
        foreach (string name in names)
        {
            // Precision is per array: out and lse are each judged in their own format.
            var format = context.FormatOf(name);
            var expected = context.Expected[name];
            if (format != NumberFormat.Float64)
            {
                if (!baselines.TryGetValue(format, out var baseline))
                {
                    baseline = Baselines(q, k, v, scale, softcap, rows, keyAlt, format);
                    baselines[format] = baseline;
                }
                reports.Add(CompareToBaseline(name, format, context.Candidate[name].ToDoubles(), expected.ToDoubles(),
                    name == "out" ? baseline.Out : baseline.Lse, expected.Shape, AttentionBaseline.Kind(format),
                    name == "out" ? baseline.OutFloor : baseline.LseFloor));
                continue;
            }

            // float64: the derived bound of the candidate (worst tiling) plus that of the double reference.
            int n = Math.Max(1, k.GetLength(2));
            var candidate = Derived(q, k, v, scale, softcap, format, n, n, false);
            var reference = Derived(q, k, v, scale, softcap, NumberFormat.Float64, 1, 1, false);
            double bound = name == "out" ? candidate.Out + reference.Out : candidate.Lse + reference.Lse;
            bool vacuous = !double.IsFinite(bound);
            var policy = new AllClosePolicy(vacuous ? double.MaxValue : bound, 0.0);
            var report = policy.Compare(name, context.Candidate[name].ToDoubles(), expected.ToDoubles(), expected.Shape);
            reports.Add(report with
            {
                Detail = $"derived_bound({Formats.Name(format)}) u={ComparisonReport.Number(Precision.UnitRoundoff(format))} "
                         + $"S1={ComparisonReport.Number(candidate.S1)} V={ComparisonReport.Number(candidate.V)} "
                         + $"n={k.GetLength(2)} "
                         + (vacuous ? "bound=vacuous (eps >= 1)" : $"bound={ComparisonReport.Number(bound)}"),
            });
        }
        return reports;
    }

    private static (double S1, double V) Magnitudes(double[,,,] q, double[,,,] k, double[,,,] v, double scale)
    {
        int b = q.GetLength(0), hq = q.GetLength(1), tq = q.GetLength(2), d = q.GetLength(3);
        int hkv = k.GetLength(1), tk = k.GetLength(2);
        int group = hkv == 0 ? 1 : Math.Max(1, hq / hkv);
        double s1 = 0.0;
        for (int a = 0; a < b; a++)
        {
            for (int h = 0; h < hq; h++)
            {
                for (int i = 0; i < tq; i++)
                {
                    for (int j = 0; j < tk; j++)
                    {
                        double sum = 0.0;
                        for (int e = 0; e < d; e++) sum += Math.Abs(q[a, h, i, e] * k[a, h / group, j, e]);
                        s1 = Math.Max(s1, Math.Abs(scale) * sum);
                    }
                }
            }
        }

        double vmax = 0.0;
        foreach (double x in v) vmax = Math.Max(vmax, Math.Abs(x));
        // The sums above are evaluated in double; a relative 2^-50 margin covers their own rounding.
        return (s1 * (1.0 + Math.ScaleB(1.0, -50)), vmax);
    }
}
