using Reference.Numerics;

namespace Reference.Routing;

/// <summary>How far a candidate's auxiliary losses may lie from the reference's: the derived bounds of proofs/aux-loss.md.</summary>
/// <param name="SwitchLoss">The largest allowed |L_candidate - L_reference|.</param>
/// <param name="ZLoss">The largest allowed |z_candidate - z_reference|.</param>
public sealed record AuxLossTolerance(double SwitchLoss, double ZLoss);

/// <summary>
/// Derives, from the inputs, how far a candidate computed in a given precision may be from the reference's losses
/// (SEMANTICS.md section 11: a tolerance stated in advance, derived rather than picked).
/// </summary>
/// <remarks>
/// <para>Switch loss: the rounding bound E(2E + N + 8)·u of theorem aux-loss.kernel-equals-reference, plus, for every token
/// whose k'-th and (k'+1)-th scores (k' = k for Megatron, 1 for DeepSpeed) are within the selection slack
/// 2(E + 4)·u·max_e P_ie + t of each other, the most that counting another of the near-tied experts can change the loss:
/// E/(N·k') · s_i · (max - min of Pbar over the near-tied experts), with s_i the number of counted slots that could swap.</para>
/// <para>z-loss: (1/N) sum_i 2|lse_i|(|lse_i| + E + 4)·u + (N + 1)·u·z + t.</para>
/// </remarks>
public static class AuxLossValidator
{
    /// <summary>The allowed deviations for a candidate computed in <paramref name="format"/>.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">k and the variant.</param>
    /// <param name="format">The candidate's precision.</param>
    /// <returns>The two bounds.</returns>
    public static AuxLossTolerance Bounds(double[,] logits, AuxLossOptions options, NumberFormat format)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        var reference = AuxLoss.Compute(logits, options); // validates the arguments
        int n = logits.GetLength(0), e = logits.GetLength(1);
        double u = Precision.UnitRoundoff(format), tiny = Precision.SmallestNormal(format);
        if (n == 0)
        {
            return new AuxLossTolerance(tiny, tiny);
        }
        int counted = options.Variant == AuxLossVariant.Megatron ? options.K : 1;
        var p = RouterScores.Compute(logits, ScoreFunction.Softmax);

        // 1. Rounding, and near-ties at the counted boundary.
        double switchBound = e * (2.0 * e + n + 8) * u + tiny;
        for (int i = 0; i < n && counted < e; i++)
        {
            var row = Enumerable.Range(0, e).Select(x => p[i, x]).ToArray();
            var order = Ranking.Order(row);
            double slack = 2.0 * (e + 4) * u * row.Max() + tiny;
            double inside = row[order[counted - 1]], outside = row[order[counted]];
            if (inside - outside > slack)
            {
                continue;
            }
            // The near-tied experts on either side of the boundary.
            int inCount = 0, outCount = 0;
            double hi = double.NegativeInfinity, lo = double.PositiveInfinity;
            for (int r = 0; r < e; r++)
            {
                double v = row[order[r]];
                if (v < outside - slack || v > inside + slack)
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
            switchBound += (double)e / ((double)n * counted) * Math.Min(inCount, outCount) * (hi - lo);
        }

        // 2. z-loss.
        double zBound = (n + 1) * u * reference.ZLoss + tiny;
        for (int i = 0; i < n; i++)
        {
            double lse = AuxLoss.LogSumExp(logits, i);
            zBound += 2.0 * Math.Abs(lse) * (Math.Abs(lse) + e + 4) * u / n;
        }
        return new AuxLossTolerance(switchBound, zBound);
    }
}
