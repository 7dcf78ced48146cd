using Reference.Attention;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges an NSA candidate's selection directly against the selection scores (proofs/tolerance.md, Definition: Decisions and near-ties): where the
/// reference's top-n boundary is a tie, or a near-tie within the candidate's precision, any valid choice passes, and
/// the candidate's <c>out</c> is then judged against NSA recomputed with the candidate's own selection, by the calibrated
/// baseline rule of <see cref="AttentionTolerance"/> with <see cref="Baseline"/> (NSA computed in the candidate's precision).
/// </summary>
/// <remarks>
/// A candidate row (one kv group g and query t, with own = floor(t / BS)) is valid when it selects exactly
/// min(S, own + 1) blocks, among them the own block, none after it, and no unselected block c &lt; own has a score above a
/// selected c' &lt; own's by more than <see cref="TieSlack"/> (proofs/attention-sparse.md, theorem
/// attention.nsa-validator). Rows that are not valid are compared with the reference's row (and fail).
/// </remarks>
public sealed class NsaValidator : IValidator
{
    /// <summary>Judges selected and out (those the candidate contains) with <see cref="Validate"/>.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of selected and out that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        return Validate(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            AttentionArrays.Double4(call, "gates"), NsaAlgorithm.Options(call),
            context.Candidate.TryGetValue("selected", out var s) ? s.ToDoubles() : null,
            context.Candidate.TryGetValue("out", out var o) ? o.ToDoubles() : null,
            context.Format, context.FormatOf("out"), NsaAlgorithm.OracleResult(call), AttentionAlgorithm.Fast(call));
    }

    /// <summary>
    /// The bound delta(u) on |score' - score| for one selection score computed in unit roundoff u, for a row with G query
    /// heads in the group, V visible compressed blocks, block size BS, head dimension D and logit magnitude
    /// A = max over heads h and visible blocks c of |scale| sum_d |q_hd| mean_{j in c} |k_jd|:
    /// E = gamma(D + BS + 2) A bounds each logit's error; the softmax of logits off by at most E is off by a factor in
    /// [e^-2E, e^2E], so each probability (at most 1) is off by at most d_h = (e^2E - 1)(1 + gamma(V + 4)) + gamma(V + 4);
    /// the sum over G heads adds G gamma(G) (1 + d_h). delta = G (d_h + gamma(G) (1 + d_h)).
    /// </summary>
    /// <param name="u">The unit roundoff.</param>
    /// <param name="heads">G, the query heads of the group.</param>
    /// <param name="visible">V, the visible compressed blocks.</param>
    /// <param name="blockSize">BS.</param>
    /// <param name="headDim">D.</param>
    /// <param name="logitMagnitude">A.</param>
    /// <returns>delta(u) (infinity when a gamma is undefined, n u &gt;= 1).</returns>
    public static double ScoreErrorBound(double u, int heads, int visible, int blockSize, int headDim, double logitMagnitude)
    {
        double e = Gamma(headDim + blockSize + 2, u) * logitMagnitude;
        double gv = Gamma(visible + 4, u);
        double perHead = (Math.Exp(2.0 * e) - 1.0) * (1.0 + gv) + gv;
        return heads * (perHead + Gamma(heads, u) * (1.0 + perHead));
    }

    /// <summary>
    /// The slack allowed between two selection scores of one row: each of the candidate's scores (unit roundoff u of
    /// <paramref name="format"/>) and each of the reference's (float64) is within its delta of the exact score, so two
    /// scores may order differently when they differ by up to 2 (delta + delta(u_f64)). A float32 or float64 candidate
    /// computes in its format (delta = delta(u)); a float16/bfloat16 candidate computes in float32, as GPU kernels do,
    /// and may round each score (at most G, the own block counting 1 per head) to its format: delta = delta(u_32) + u G.
    /// </summary>
    /// <param name="format">The candidate's precision.</param>
    /// <param name="heads">G.</param>
    /// <param name="visible">V.</param>
    /// <param name="blockSize">BS.</param>
    /// <param name="headDim">D.</param>
    /// <param name="logitMagnitude">A, as in <see cref="ScoreErrorBound"/>.</param>
    /// <returns>The slack.</returns>
    public static double TieSlack(NumberFormat format, int heads, int visible, int blockSize, int headDim, double logitMagnitude)
    {
        double u = Precision.UnitRoundoff(format);
        double candidate = format is NumberFormat.Float16 or NumberFormat.BFloat16
            ? ScoreErrorBound(Precision.UnitRoundoff(NumberFormat.Float32), heads, visible, blockSize, headDim, logitMagnitude) + u * heads
            : ScoreErrorBound(u, heads, visible, blockSize, headDim, logitMagnitude);
        return 2.0 * (candidate
                      + ScoreErrorBound(Precision.UnitRoundoff(NumberFormat.Float64), heads, visible, blockSize, headDim, logitMagnitude));
    }

    /// <summary>Validates a candidate's selection and/or output.</summary>
    /// <param name="q">Queries [B, Hq, T, D].</param>
    /// <param name="k">Keys [B, Hkv, T, D].</param>
    /// <param name="v">Values [B, Hkv, T, Dv].</param>
    /// <param name="gates">Gates [B, Hq, T, 3].</param>
    /// <param name="options">The NSA options.</param>
    /// <param name="selected">The candidate's selection [B, Hkv, T, nb] flat (0/1), or null when it has none.</param>
    /// <param name="output">The candidate's out [B, Hq, T, Dv] flat, or null when it has none.</param>
    /// <param name="format">The precision the candidate's selection is judged in (its near-ties).</param>
    /// <param name="outputFormat">The precision <paramref name="output"/> is judged in.</param>
    /// <param name="reference"><see cref="Nsa.Compute"/> of these inputs, when the caller has it; null: computed here.</param>
    /// <param name="fast">Recompute NSA (the reference when not given, and with the candidate's selection) with
    /// <see cref="NsaFast"/>, equal to <see cref="Nsa"/> bit for bit.</param>
    /// <returns>A report for <c>selected</c> and one for <c>out</c>, for those the candidate has.</returns>
    public static IReadOnlyList<ComparisonReport> Validate(
        double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options,
        double[]? selected, double[]? output, NumberFormat format, NumberFormat outputFormat, NsaResult? reference = null, bool fast = false)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(options);
        reference ??= fast ? NsaFast.Compute(q, k, v, gates, options) : Nsa.Compute(q, k, v, gates, options);
        var score = Nsa.SelectionScores(q, k, v, gates, options);
        int bsz = score.GetLength(0), hkv = score.GetLength(1), t = score.GetLength(2), nb = score.GetLength(3);
        int hq = q.GetLength(1), group = hq / hkv, d = q.GetLength(3), bs = options.BlockSize;
        double scale = options.Scale ?? 1.0 / Math.Sqrt(d);

        // 1. |k| pooled per block: mean_{j in c} |k_jd| [B, Hkv, nb, D], for the logit magnitude A.
        var kAbs = new double[bsz, hkv, nb, d];
        for (int b = 0; b < bsz; b++)
        {
            for (int g = 0; g < hkv; g++)
            {
                for (int c = 0; c < nb; c++)
                {
                    int start = c * bs, end = Math.Min(t, start + bs);
                    for (int x = 0; x < d; x++)
                    {
                        double sum = 0.0;
                        for (int j = start; j < end; j++) sum += Math.Abs(k[b, g, j, x]);
                        kAbs[b, g, c, x] = sum / (end - start);
                    }
                }
            }
        }

        // 2. Per row: the candidate's row if it is a valid selection, else the reference's.
        var expected = (bool[,,,])reference.Selected.Clone();
        bool differs = false;
        string? firstInvalid = null;
        if (selected is not null)
        {
            for (int b = 0; b < bsz; b++)
            {
                for (int g = 0; g < hkv; g++)
                {
                    for (int i = 0; i < t; i++)
                    {
                        int own = i / bs, visible = Math.Min(nb, (i + 1) / bs);
                        var row = new bool[nb];
                        long offset = (((long)b * hkv + g) * t + i) * nb;
                        for (int c = 0; c < nb; c++) row[c] = selected[offset + c] != 0.0;
                        double a = 0.0;
                        for (int h = g * group; h < (g + 1) * group; h++)
                        {
                            for (int c = 0; c < visible; c++)
                            {
                                double dot = 0.0;
                                for (int x = 0; x < d; x++) dot += Math.Abs(q[b, h, i, x]) * kAbs[b, g, c, x];
                                a = Math.Max(a, Math.Abs(scale) * dot);
                            }
                        }

                        double slack = TieSlack(format, group, visible, bs, d, a);
                        var rowScore = new double[own];
                        for (int c = 0; c < own; c++) rowScore[c] = score[b, g, i, c];
                        string? reason = Invalid(row, own, Math.Min(options.TopN, own + 1), rowScore, slack);
                        if (reason is null)
                        {
                            for (int c = 0; c < nb; c++)
                            {
                                differs |= expected[b, g, i, c] != row[c];
                                expected[b, g, i, c] = row[c];
                            }
                        }
                        else
                        {
                            firstInvalid ??= $"[b={b}, g={g}, t={i}]: {reason}";
                        }
                    }
                }
            }
        }

        // 3. The expected output follows the (merged) selection.
        var expectedOut = !differs ? reference.Out
            : fast ? NsaFast.ComputeWithSelection(q, k, v, gates, options, expected).Out
            : Nsa.ComputeWithSelection(q, k, v, gates, options, expected).Out;

        var reports = new List<ComparisonReport>();
        if (selected is not null)
        {
            var flat = new double[expected.Length];
            long n = 0;
            foreach (bool x in expected) flat[n++] = x ? 1.0 : 0.0;
            var report = new ExactPolicy().Compare("selected", selected, flat, [bsz, hkv, t, nb]);
            reports.Add(firstInvalid is null ? report : report with { Detail = "first invalid row " + firstInvalid });
        }
        if (output is not null)
        {
            var flat = new double[expectedOut.Length];
            long n = 0;
            foreach (double x in expectedOut) flat[n++] = x;
            var baseline = new[] { Baseline(q, k, v, gates, options, expected, outputFormat, 0), Baseline(q, k, v, gates, options, expected, outputFormat, 1) };
            reports.Add(AttentionTolerance.CompareToBaseline(
                "out", outputFormat, output, flat, baseline,
                [expectedOut.GetLength(0), expectedOut.GetLength(1), expectedOut.GetLength(2), expectedOut.GetLength(3)],
                AttentionBaseline.Kind(outputFormat) + "-3-branches", NsaOutFloor(v, gates)));
        }
        return reports;
    }

    /// <summary>
    /// NSA computed naively in <paramref name="format"/> under <paramref name="selected"/> (the baseline of the
    /// calibrated rule, <see cref="AttentionTolerance"/>): the three branches by <see cref="AttentionBaseline"/> (the
    /// compressed keys and values mean-pooled in double and rounded once to the format), and the gated sum
    /// (g_cmp o_cmp + g_slc o_slc) + g_win o_win with every product and sum rounded to the format (float32 for
    /// float32 and float64), as elementwise tensor operations in that precision do.
    /// </summary>
    /// <param name="q">Queries [B, Hq, T, D].</param>
    /// <param name="k">Keys [B, Hkv, T, D].</param>
    /// <param name="v">Values [B, Hkv, T, Dv].</param>
    /// <param name="gates">Gates [B, Hq, T, 3].</param>
    /// <param name="options">The NSA options.</param>
    /// <param name="selected">The selection [B, Hkv, T, nb].</param>
    /// <param name="format">The candidate's precision for out.</param>
    /// <param name="order">The naive order of the branches (0 or 1, see <see cref="AttentionBaseline"/>).</param>
    /// <returns>out [B, Hq, T, Dv], flat.</returns>
    public static double[] Baseline(double[,,,] q, double[,,,] k, double[,,,] v, double[,,,] gates, NsaOptions options,
                                    bool[,,,] selected, NumberFormat format, int order)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(gates);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(selected);
        int bsz = q.GetLength(0), hq = q.GetLength(1), t = q.GetLength(2), d = q.GetLength(3), dv = v.GetLength(3);
        int hkv = k.GetLength(1), group = hq / hkv, bs = options.BlockSize, nb = (t + bs - 1) / bs, w = options.Window;
        double scale = options.Scale ?? 1.0 / Math.Sqrt(d);
        var kCmp = Nsa.Pool(k, bs, nb);
        var vCmp = Nsa.Pool(v, bs, nb);
        var cmp = AttentionBaseline.Compute(q, kCmp, vCmp, scale, 0.0,
            (_, _, i, kinds) => { for (int c = 0; c < kinds.Length; c++) kinds[c] = (c + 1) * bs <= i + 1 ? (byte)1 : (byte)0; },
            null, format, order).Out;
        var slc = AttentionBaseline.Compute(q, k, v, scale, 0.0,
            (b, h, i, kinds) => { for (int j = 0; j < kinds.Length; j++) kinds[j] = j <= i && selected[b, h / group, i, j / bs] ? (byte)1 : (byte)0; },
            null, format, order).Out;
        var win = AttentionBaseline.Compute(q, k, v, scale, 0.0,
            (_, _, i, kinds) => { for (int j = 0; j < kinds.Length; j++) kinds[j] = w > 0 && j <= i && j > i - w ? (byte)1 : (byte)0; },
            null, format, order).Out;
        var result = new double[cmp.Length];
        var low = format is NumberFormat.Float16 or NumberFormat.BFloat16 ? format : NumberFormat.Float32;
        float R(float x) => AttentionBaseline.Round(x, low);
        for (int b = 0; b < bsz; b++)
        {
            for (int h = 0; h < hq; h++)
            {
                for (int i = 0; i < t; i++)
                {
                    float g0 = R((float)gates[b, h, i, 0]), g1 = R((float)gates[b, h, i, 1]), g2 = R((float)gates[b, h, i, 2]);
                    long row = (((long)b * hq + h) * t + i) * dv;
                    for (int e = 0; e < dv; e++)
                    {
                        long n = row + e;
                        float x = R(R(g0 * (float)cmp[n]) + R(g1 * (float)slc[n]));
                        result[n] = R(x + R(g2 * (float)win[n]));
                    }
                }
            }
        }

        return result;
    }

    /// <summary>The rounding floor of NSA's out: <see cref="AttentionTolerance.OutFloorUlps"/> u_f32 max|v| per branch,
    /// times the largest sum of |gates| of a row, plus 3 u_f32 for the gated sum.</summary>
    private static double NsaOutFloor(double[,,,] v, double[,,,] gates)
    {
        double vmax = 0.0, gmax = 0.0;
        foreach (double x in v) vmax = Math.Max(vmax, Math.Abs(x));
        for (int b = 0; b < gates.GetLength(0); b++)
        {
            for (int h = 0; h < gates.GetLength(1); h++)
            {
                for (int i = 0; i < gates.GetLength(2); i++)
                    gmax = Math.Max(gmax, Math.Abs(gates[b, h, i, 0]) + Math.Abs(gates[b, h, i, 1]) + Math.Abs(gates[b, h, i, 2]));
            }
        }

        return (AttentionTolerance.OutFloorUlps + 3.0) * Precision.UnitRoundoff(NumberFormat.Float32) * vmax * gmax;
    }

    /// <summary>Why a row is not a valid selection, or null when it is.</summary>
    /// <param name="row">The candidate's row [nb].</param>
    /// <param name="own">The own block.</param>
    /// <param name="count">The required count min(S, own + 1).</param>
    /// <param name="score">The scores of the blocks before own.</param>
    /// <param name="slack">The allowed slack.</param>
    private static string? Invalid(bool[] row, int own, int count, double[] score, double slack)
    {
        int selectedCount = row.Count(x => x);
        if (selectedCount != count) return $"selects {selectedCount} blocks, expected {count}";
        if (!row[own]) return $"misses the own block {own}";
        for (int c = own + 1; c < row.Length; c++)
            if (row[c]) return $"selects block {c} after the own block {own}";
        double weakest = double.PositiveInfinity;
        for (int c = 0; c < own; c++)
            if (row[c]) weakest = Math.Min(weakest, score[c]);
        for (int c = 0; c < own; c++)
        {
            if (!row[c] && score[c] > weakest + slack)
                return $"leaves out block {c} (score {score[c]:R}) for a selected block of score {weakest:R} (slack {slack:R})";
        }

        return null;
    }

    /// <summary>gamma(n) = n u / (1 - n u), infinity when n u &gt;= 1.</summary>
    internal static double Gamma(int n, double u) => n * u < 1.0 ? n * u / (1.0 - n * u) : double.PositiveInfinity;
}
