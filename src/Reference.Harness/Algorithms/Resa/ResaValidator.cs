using Reference.Attention;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a ReSA decode-step candidate's selection directly against the block scores (proofs/tolerance.md, Definition: Decisions and near-ties): where
/// the reference's boundary is a tie, or a near-tie within the candidate's precision, any valid choice passes, and the
/// candidate's <c>out</c> and <c>lse</c> are then judged against the step recomputed with the candidate's own selection,
/// by the calibrated baseline rule of <see cref="AttentionTolerance"/> (the step computed in the candidate's precision).
/// </summary>
/// <remarks>
/// A candidate row (one kv head g) is valid when it selects exactly the reference's count, among them the last
/// min(n_local, nb) blocks, and no unselected other block has a score above a selected other block's by more than
/// <see cref="TieSlack"/> (proofs/attention-sparse.md, theorem attention.resa-validator). Rows that are not valid are
/// compared with the reference's row (and fail).
/// </remarks>
public sealed class ResaValidator : IValidator
{
    /// <summary>Judges selected, out and lse (those the candidate contains) with <see cref="Validate"/>.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of selected, out and lse that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        return Validate(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), ResaAlgorithm.Options(call),
            context.Candidate.TryGetValue("selected", out var s) ? s.ToDoubles() : null,
            context.Candidate.TryGetValue("out", out var o) ? o.ToDoubles() : null,
            context.Candidate.TryGetValue("lse", out var x) ? x.ToDoubles() : null,
            context.Format, context.FormatOf);
    }

    /// <summary>
    /// The bound delta(u) on |score' - score_c| for a block score computed in unit roundoff u: with
    /// Q_d = sum_{h in g} |q_hd| / (G sqrt D) and M_cd = max(|kmax_cd|, |kmin_cd|), the pooled query is off by at most
    /// gamma(G + 2) Q_d per entry (G - 1 additions, two divisions, the square root), each product adds one rounding and
    /// the sum over D terms D - 1 more, and max(x, y) is 1-Lipschitz, so delta = gamma(D + G + 2) sum_d Q_d M_cd.
    /// </summary>
    /// <param name="u">The unit roundoff.</param>
    /// <param name="heads">G.</param>
    /// <param name="headDim">D.</param>
    /// <param name="magnitude">sum_d Q_d M_cd.</param>
    /// <returns>delta(u) (infinity when (D + G + 2) u &gt;= 1).</returns>
    public static double ScoreErrorBound(double u, int heads, int headDim, double magnitude) =>
        NsaValidator.Gamma(headDim + heads + 2, u) * magnitude;

    /// <summary>The slack between two block scores of one kv head: 2 (delta + delta(u_f64)) with the largest
    /// magnitude over the candidate blocks (candidate and reference scores each within their delta of the exact score).
    /// A float32 or float64 candidate computes in its format: delta = delta(u). A float16/bfloat16 candidate computes
    /// as GPU kernels do, in float32 on its inputs, and may round the score to its format: delta = delta(u_32) +
    /// u magnitude (|score| &lt;= magnitude). Modelling every operation in float16 instead (delta(u_16), about D u_16)
    /// accepted a selection made from the group's last head instead of its mean.</summary>
    /// <param name="format">The candidate's precision.</param>
    /// <param name="heads">G.</param>
    /// <param name="headDim">D.</param>
    /// <param name="magnitude">max over the non-local blocks of sum_d Q_d M_cd.</param>
    /// <returns>The slack.</returns>
    public static double TieSlack(NumberFormat format, int heads, int headDim, double magnitude)
    {
        double u = Precision.UnitRoundoff(format);
        double candidate = format is NumberFormat.Float16 or NumberFormat.BFloat16
            ? ScoreErrorBound(Precision.UnitRoundoff(NumberFormat.Float32), heads, headDim, magnitude) + u * magnitude
            : ScoreErrorBound(u, heads, headDim, magnitude);
        return 2.0 * (candidate + ScoreErrorBound(Precision.UnitRoundoff(NumberFormat.Float64), heads, headDim, magnitude));
    }

    /// <summary>Validates a candidate's selection and/or out and lse.</summary>
    /// <param name="q">Queries [B, Hq, 1, D].</param>
    /// <param name="k">Key cache [B, Hkv, L, D].</param>
    /// <param name="v">Value cache [B, Hkv, L, Dv].</param>
    /// <param name="options">The ReSA options.</param>
    /// <param name="selected">The candidate's selection [B, Hkv, nb] flat (0/1), or null.</param>
    /// <param name="output">The candidate's out [B, Hq, 1, Dv] flat, or null.</param>
    /// <param name="lse">The candidate's lse [B, Hq, 1] flat, or null.</param>
    /// <param name="format">The precision the candidate's selection is judged in (its near-ties).</param>
    /// <param name="formatOf">The precision each float output (out, lse) is judged in.</param>
    /// <returns>Reports for <c>selected</c>, <c>out</c> and <c>lse</c>, for those the candidate has.</returns>
    public static IReadOnlyList<ComparisonReport> Validate(
        double[,,,] q, double[,,,] k, double[,,,] v, ResaOptions options,
        double[]? selected, double[]? output, double[]? lse, NumberFormat format, Func<string, NumberFormat> formatOf)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(options);
        var reference = Resa.DecodeStep(q, k, v, options);
        var score = Resa.BlockScores(q, k, v, options);
        int bsz = score.GetLength(0), hkv = score.GetLength(1), nb = score.GetLength(2);
        int hq = q.GetLength(1), group = hq / hkv, d = q.GetLength(3), l = k.GetLength(2), bs = options.BlockSize;
        int total = Resa.SelectedCount(nb, options), local = Math.Min(options.NLocal, nb);

        // 1. Per kv head: the candidate's row if it is a valid selection, else the reference's.
        var expected = (bool[,,])reference.Selected.Clone();
        bool differs = false;
        string? firstInvalid = null;
        if (selected is not null)
        {
            for (int b = 0; b < bsz; b++)
            {
                for (int g = 0; g < hkv; g++)
                {
                    var row = new bool[nb];
                    for (int c = 0; c < nb; c++) row[c] = selected[((long)b * hkv + g) * nb + c] != 0.0;
                    double magnitude = 0.0;
                    for (int c = 0; c < nb - local; c++)
                    {
                        double m = 0.0;
                        for (int x = 0; x < d; x++)
                        {
                            double qAbs = 0.0, kMax = 0.0;
                            for (int h = g * group; h < (g + 1) * group; h++) qAbs += Math.Abs(q[b, h, 0, x]);
                            for (int j = c * bs; j < Math.Min(l, (c + 1) * bs); j++) kMax = Math.Max(kMax, Math.Abs(k[b, g, j, x]));
                            m += qAbs / group / Math.Sqrt(d) * kMax;
                        }
                        magnitude = Math.Max(magnitude, m);
                    }
                    double slack = TieSlack(format, group, d, magnitude);
                    var rowScore = new double[nb];
                    for (int c = 0; c < nb; c++) rowScore[c] = score[b, g, c];
                    string? reason = Invalid(row, local, total, rowScore, slack);
                    if (reason is null)
                    {
                        for (int c = 0; c < nb; c++)
                        {
                            differs |= expected[b, g, c] != row[c];
                            expected[b, g, c] = row[c];
                        }
                    }
                    else
                    {
                        firstInvalid ??= $"[b={b}, g={g}]: {reason}";
                    }
                }
            }
        }

        // 2. The expected out and lse follow the (merged) selection.
        var step = differs ? Resa.DecodeStepWithSelection(q, k, v, options, expected) : reference;

        var reports = new List<ComparisonReport>();
        if (selected is not null)
        {
            var report = new ExactPolicy().Compare("selected", selected, Flat(expected), [bsz, hkv, nb]);
            reports.Add(firstInvalid is null ? report : report with { Detail = "first invalid row " + firstInvalid });
        }
        // 3. out and lse by the calibrated baseline rule: attention over the selected blocks' positions, computed in the
        //    candidate's precision for each array (AttentionTolerance).
        double scale = options.Scale ?? 1.0 / Math.Sqrt(d);
        AttentionRowKeys rows = (b, h, _, kinds) =>
        {
            for (int j = 0; j < kinds.Length; j++) kinds[j] = expected[b, h / group, j / bs] ? (byte)1 : (byte)0;
        };
        var baselines = new Dictionary<NumberFormat, (double[][] Out, double[][] Lse, double OutFloor, double LseFloor)>();
        (double[][] Out, double[][] Lse, double OutFloor, double LseFloor) BaselineIn(NumberFormat f)
        {
            if (!baselines.TryGetValue(f, out var r)) baselines[f] = r = AttentionTolerance.Baselines(q, k, v, scale, 0.0, rows, null, f);
            return r;
        }
        if (output is not null)
        {
            var f = formatOf("out");
            reports.Add(AttentionTolerance.CompareToBaseline("out", f, output, Flat(step.Out), BaselineIn(f).Out,
                [bsz, hq, 1, step.Out.GetLength(3)], AttentionBaseline.Kind(f), BaselineIn(f).OutFloor));
        }
        if (lse is not null)
        {
            var f = formatOf("lse");
            reports.Add(AttentionTolerance.CompareToBaseline("lse", f, lse, Flat(step.Lse), BaselineIn(f).Lse, [bsz, hq, 1],
                AttentionBaseline.Kind(f), BaselineIn(f).LseFloor));
        }
        return reports;
    }

    /// <summary>Why a row is not a valid selection, or null when it is.</summary>
    private static string? Invalid(bool[] row, int local, int total, double[] score, double slack)
    {
        int nb = row.Length, count = row.Count(x => x);
        if (count != total) return $"selects {count} blocks, expected {total}";
        for (int c = nb - local; c < nb; c++)
            if (!row[c]) return $"misses the local block {c}";
        double weakest = double.PositiveInfinity;
        for (int c = 0; c < nb - local; c++)
            if (row[c]) weakest = Math.Min(weakest, score[c]);
        for (int c = 0; c < nb - local; c++)
        {
            if (!row[c] && score[c] > weakest + slack)
                return $"leaves out block {c} (score {score[c]:R}) for a selected block of score {weakest:R} (slack {slack:R})";
        }

        return null;
    }

    private static double[] Flat(Array x)
    {
        var flat = new double[x.Length];
        long n = 0;
        foreach (object? e in x) flat[n++] = e is bool bb ? (bb ? 1.0 : 0.0) : (double)e!;
        return flat;
    }
}
