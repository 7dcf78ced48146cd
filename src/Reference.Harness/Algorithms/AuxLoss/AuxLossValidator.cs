using System.Globalization;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>How far a candidate's auxiliary losses may lie from the reference's: the derived bounds of proofs/aux-loss.md.</summary>
/// <param name="SwitchLoss">The largest allowed |L_candidate - L_reference|.</param>
/// <param name="ZLoss">The largest allowed |z_candidate - z_reference|.</param>
public sealed record AuxLossTolerance(double SwitchLoss, double ZLoss)
{
    /// <summary>The part of the Switch bound that near-ties at the counted boundary contribute (0 without near-ties).</summary>
    public double SwitchNearTies { get; init; }

    /// <summary>The Switch bound's parts (rounding, reduction baseline, near-ties), for a report's detail.</summary>
    public string SwitchDetail { get; init; } = "";

    /// <summary>The z bound's parts, for a report's detail.</summary>
    public string ZDetail { get; init; } = "";
}

/// <summary>
/// Derives, from the inputs, how far a candidate whose losses carry a given precision may be from the reference's
/// (proofs/tolerance.md, Definition: Tight and fair: a tolerance stated in advance, derived rather than picked,
/// tight and fair). Theorem aux-loss.derived-tolerance.
/// </summary>
/// <remarks>
/// <para>The candidate model (what torch does for float16/bfloat16 routers, e.g. Hugging Face's
/// <c>load_balancing_loss_func</c>): softmax and all reductions in float32 (float64 for a float64 result), the result
/// rounded to its own format. With u_c the computation's unit roundoff and u_v the result's, the bound is a running
/// (a posteriori) error bound in the values of the computation (Higham, ch. 3) instead of the a priori E(2E + N + 8)·u:</para>
/// <list type="bullet">
/// <item>softmax: each P_ie has relative error at most (|X_ie - m_i| + E + 3)·u_c;</item>
/// <item>the reduction over the N tokens of each expert: the looser of twice the error of the naive sequential sum in
/// the computation's precision on these inputs (the baseline rule; it catches systematic drift) and the probabilistic
/// bound λ·sqrt(N - 1)·u_c·sum|terms| with λ = <see cref="Lambda"/> (Higham and Mary 2019, Theorem 3.1: it holds with
/// probability at least 1 - 2N·exp(-λ²/2) when the rounding errors are independent; pairwise and blocked orders are
/// rigorously inside it for the sizes the properties generate);</item>
/// <item>the dot product over E non-negative terms and the scalings: (E + 5)·u_c·|L|; rounding to the result's
/// format: u_v·|L|;</item>
/// <item>near-ties: the candidate's score of P_ie lies within the slack 2(E + 4)·u_c·max_e P_ie of it, and when the
/// decisions are judged in a format coarser than the computation's it may rank the scores rounded to it (rounding is
/// monotone, so it can only tie neighbours). For every token whose k'-th and (k'+1)-th scores (k' = k for Megatron, 1
/// for DeepSpeed) can so meet, the most that counting another of the near-tied experts can change the loss:
/// scale/(N·k') · s_i · (max - min of Pbar over the near-tied experts), with s_i the number of counted slots that could
/// swap.</item>
/// </list>
/// <para>z-loss: each lse_i = m_i + log s_i has |error| &lt;= ρ_i + u_c(|log s_i| + |lse_i|), ρ_i the running bound of the
/// sum s_i; squaring adds 2|lse_i|·|error| + u_c·lse_i²; the mean over tokens the same reduction term as above;
/// the division u_c·z and the result's rounding u_v·z.</para>
/// </remarks>
public sealed class AuxLossValidator : IValidator
{
    /// <summary>Judges switch_loss and z_loss against the derived bounds of <see cref="Bounds(double[,], AuxLossOptions, AuxLossResult, NumberFormat, NumberFormat)"/>.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of switch_loss and z_loss that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var logits = context.Call.Matrix("logits");
        var options = AuxLossAlgorithm.Options(context.Call);
        // hf is k x megatron with the same operations but for the divisor (N instead of N·k), so its relative
        // rounding error and its near-tie slack are Megatron's, and its absolute bound is k times Megatron's
        // (proofs/aux-loss.md, aux-loss.hf-is-k-megatron).
        bool hf = options.Variant == AuxLossVariant.Hf;
        var boundOptions = hf ? options with { Variant = AuxLossVariant.Megatron } : options;
        // The reference's own result (memoized: check has already run it), so P and the counts are not recomputed;
        // the bounds once per pair of formats (the two losses usually share it).
        var reference = AuxLossAlgorithm.OracleResult(context.Call, boundOptions);
        var bySelection = new Dictionary<(NumberFormat, NumberFormat), AuxLossTolerance>();
        var reports = new List<ComparisonReport>();
        foreach (var name in new[] { "switch_loss", "z_loss" })
        {
            if (context.Candidate.TryGetValue(name, out var c))
            {
                // The value judged in the precision it carries, near-ties in the decisions' precision.
                var formats = (context.FormatOf(name), context.Format);
                if (!bySelection.TryGetValue(formats, out var bounds))
                {
                    bounds = Bounds(logits, boundOptions, reference, formats.Item1, formats.Item2);
                    bySelection[formats] = bounds;
                }
                bool isSwitch = name == "switch_loss";
                double bound = !isSwitch ? bounds.ZLoss : hf ? bounds.SwitchLoss * options.K : bounds.SwitchLoss;
                string? detail = !isSwitch ? bounds.ZDetail : hf ? $"hf = k x megatron, k = {options.K}: {bounds.SwitchDetail}" : bounds.SwitchDetail;
                // allclose with the derived bound as atol and no rtol: |c - r| <= bound (the margin is error / bound).
                var report = new AllClosePolicy(bound, 0.0).Compare(name, c.ToDoubles(), context.Expected[name].ToDoubles(), []);
                reports.Add(report with { Detail = detail });
            }
        }
        return reports;
    }

    /// <summary>λ of the probabilistic summation bound λ·sqrt(N - 1)·u·sum|terms| (Higham and Mary 2019): with λ = 7 the
    /// bound fails with probability below 2N·exp(-24.5), 3e-6 at N = 65536. Measured: correct float32 candidates in
    /// sequential, pairwise and blocked orders stay below a tenth of it (proofs/aux-loss.md, detection table).</summary>
    public const double Lambda = 7.0;

    /// <summary>How many times the naive sequential sum's error a candidate's reduction may have (the baseline rule's factor).</summary>
    public const double BaselineFactor = 2.0;

    /// <summary>The allowed deviations for a candidate whose losses and decisions carry <paramref name="format"/>.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">k and the variant.</param>
    /// <param name="format">The candidate's precision.</param>
    /// <returns>The two bounds.</returns>
    public static AuxLossTolerance Bounds(double[,] logits, AuxLossOptions options, NumberFormat format) =>
        Bounds(logits, options, format, format);

    /// <summary>The allowed deviations for a candidate whose losses carry <paramref name="valueFormat"/> and whose
    /// top-k decisions are judged in <paramref name="selectionFormat"/>.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">k and the variant.</param>
    /// <param name="valueFormat">The precision the loss value carries (the CLI's <c>FormatOf</c>).</param>
    /// <param name="selectionFormat">The precision near-ties are judged in (the CLI's <c>Format</c>).</param>
    /// <returns>The two bounds, with their parts.</returns>
    public static AuxLossTolerance Bounds(
        double[,] logits, AuxLossOptions options, NumberFormat valueFormat, NumberFormat selectionFormat)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        return Bounds(logits, options, AuxLoss.Compute(logits, options), valueFormat, selectionFormat); // validates the arguments
    }

    /// <summary>The allowed deviations, from the reference's own result for these logits and options (its losses,
    /// fractions, mean scores and scores P), so that nothing is computed twice.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">k and the variant the reference ran with.</param>
    /// <param name="reference"><see cref="AuxLoss.Compute"/> of these logits and options, with its <see cref="AuxLossResult.Scores"/>.</param>
    /// <param name="valueFormat">The precision the loss value carries.</param>
    /// <param name="selectionFormat">The precision near-ties are judged in.</param>
    /// <returns>The two bounds, with their parts.</returns>
    public static AuxLossTolerance Bounds(
        double[,] logits, AuxLossOptions options, AuxLossResult reference, NumberFormat valueFormat, NumberFormat selectionFormat)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(reference);
        int n = logits.GetLength(0), e = logits.GetLength(1);
        var compute = valueFormat == NumberFormat.Float64 ? NumberFormat.Float64 : NumberFormat.Float32;
        double uc = Precision.UnitRoundoff(compute), uv = Precision.UnitRoundoff(valueFormat);
        double us = selectionFormat > compute ? Precision.UnitRoundoff(selectionFormat) : 0.0;
        // Floor: a value below the smallest normal is stored with an absolute error up to u_v times it (gradual underflow).
        double tiny = 2.0 * uv * Precision.SmallestNormal(valueFormat) + Precision.SmallestNormal(compute);
        if (n == 0)
        {
            return new AuxLossTolerance(tiny, tiny);
        }
        int counted = options.Variant == AuxLossVariant.Megatron ? options.K : 1;
        var p = reference.Scores ?? RouterScores.Compute(logits, ScoreFunction.Softmax);
        double probabilistic = Lambda * Math.Sqrt(n - 1) * uc;

        var rowMax = new double[n]; // [N]
        for (int i = 0; i < n; i++)
        {
            rowMax[i] = double.NegativeInfinity;
            for (int y = 0; y < e; y++)
            {
                rowMax[i] = Math.Max(rowMax[i], logits[i, y]);
            }
        }

        // 1. Per expert: the softmax's running bound and the reduction over tokens (baseline vs probabilistic).
        // Each expert's sums run over the tokens in order; the tokens are the outer loop so that P and X are read row by
        // row (reading them column by column costs a pass over memory per expert).
        var meanError = new double[e]; // [E], bound on |computed Pbar_e - Pbar_e|
        var exacts = new double[e];
        var softmaxes = new double[e];
        var sequentials = new double[e];
        for (int i = 0; i < n; i++)
        {
            for (int x = 0; x < e; x++)
            {
                exacts[x] += p[i, x];
                softmaxes[x] += p[i, x] * (Math.Abs(logits[i, x] - rowMax[i]) + e + 3) * uc;
                sequentials[x] = Precision.Round(sequentials[x] + Precision.Round(p[i, x], compute), compute);
            }
        }
        double baselineMax = 0;
        for (int x = 0; x < e; x++)
        {
            double exact = exacts[x], softmax = softmaxes[x], sequential = sequentials[x];
            double baseline = Math.Abs(sequential - exact);
            baselineMax = Math.Max(baselineMax, baseline / n);
            meanError[x] = (softmax + Math.Max(BaselineFactor * baseline, probabilistic * exact)) / n + uc * exact / n;
        }
        // L = scale · sum_e f_e·Pbar_e (scale = E, or E·k for conventions that sum over the k slots).
        double weighted = 0;
        for (int x = 0; x < e; x++)
        {
            weighted += reference.Fraction[x] * reference.MeanScore[x];
        }
        double scale = weighted > 0 ? reference.SwitchLoss / weighted : 0.0;
        double reduction = 0;
        for (int x = 0; x < e; x++)
        {
            reduction += scale * reference.Fraction[x] * meanError[x];
        }
        double loss = Math.Abs(reference.SwitchLoss);
        double rounding = (e + 5) * uc * loss + uv * loss;

        // 2. Near-ties at the counted boundary.
        double ties = 0;
        int tiedTokens = 0;
        var selection = us > 0 ? selectionFormat : compute;
        var sorted = new double[e]; // [E] one row's scores, ascending
        for (int i = 0; i < n && counted < e; i++)
        {
            var row = new double[e];
            for (int x = 0; x < e; x++)
            {
                row[x] = p[i, x];
            }
            // The candidate's score of v lies in [v - slack, v + slack]; ranking it after rounding to the selection
            // format (monotone) can at most tie it with a neighbour: it may land anywhere in [Low(v), High(v)].
            row.CopyTo(sorted, 0);
            Array.Sort(sorted);
            double slack = 2.0 * (e + 4) * uc * sorted[e - 1] + Precision.SmallestNormal(compute);
            double Low(double v) => Precision.Round(v - slack, selection);
            double High(double v) => Precision.Round(v + slack, selection);
            // The counted-th and (counted+1)-th largest scores, whatever the order among equal ones; most rows have no
            // near-tie there and need no ranking.
            double inside = sorted[e - counted], outside = sorted[e - counted - 1];
            if (Low(inside) > High(outside))
            {
                continue;
            }
            var order = Ranking.Order(row);
            // The near-tied experts on either side of the boundary: those whose range meets the other side's.
            int inCount = 0, outCount = 0;
            double hi = double.NegativeInfinity, lo = double.PositiveInfinity;
            for (int r = 0; r < e; r++)
            {
                double v = row[order[r]];
                bool tied = r < counted ? Low(v) <= High(outside) : High(v) >= Low(inside);
                if (!tied)
                {
                    continue;
                }
                if (r < counted)
                {
                    inCount++;
                }
                else
                {
                    outCount++;
                }
                hi = Math.Max(hi, reference.MeanScore[order[r]]);
                lo = Math.Min(lo, reference.MeanScore[order[r]]);
            }
            tiedTokens++;
            ties += scale / ((double)n * counted) * Math.Min(inCount, outCount) * (hi - lo);
        }
        double switchBound = reduction + rounding + ties + tiny;

        // 3. z-loss.
        // Each token's lse and its error bound, tokens in parallel (each writes its own entry); the sums in token order.
        var lses = new double[n];
        var lseErrors = new double[n];
        RowBlocks.For(n, i =>
        {
            double m = rowMax[i], s = 0, rho = 0;
            for (int y = 0; y < e; y++)
            {
                double t = Math.Exp(logits[i, y] - m);
                s += t;
                rho += t * (Math.Abs(logits[i, y] - m) + e + 1) * uc;
            }
            lses[i] = m + Math.Log(s);
            lseErrors[i] = rho / s + uc * (Math.Abs(Math.Log(s)) + Math.Abs(lses[i]));
        });
        double zTerms = 0, zExact = 0, zSequential = 0;
        for (int i = 0; i < n; i++)
        {
            double lse = lses[i], lseError = lseErrors[i];
            zTerms += 2.0 * Math.Abs(lse) * lseError + uc * lse * lse;
            zExact += lse * lse;
            zSequential = Precision.Round(zSequential + Precision.Round(lse * lse, compute), compute);
        }
        double zBaseline = Math.Abs(zSequential - zExact);
        double zReduction = Math.Max(BaselineFactor * zBaseline, probabilistic * zExact);
        double z = Math.Abs(reference.ZLoss);
        double zBound = (zTerms + zReduction) / n + uc * z + uv * z + tiny;

        string Num(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
        return new AuxLossTolerance(switchBound, zBound)
        {
            SwitchNearTies = ties,
            SwitchDetail = $"bound={Num(switchBound)} = reduction {Num(reduction)} (sequential baseline {Num(baselineMax)}, "
                           + $"probabilistic {Num(probabilistic)}) + rounding {Num(rounding)} + near-ties {Num(ties)} "
                           + $"({tiedTokens} tokens); u_compute={Num(uc)} u_value={Num(uv)}",
            ZDetail = $"bound={Num(zBound)} = terms {Num(zTerms / n)} + reduction {Num(zReduction / n)} (sequential baseline "
                      + $"{Num(zBaseline / n)}) + rounding {Num((uc + uv) * z)}; u_compute={Num(uc)} u_value={Num(uv)}",
        };
    }
}
