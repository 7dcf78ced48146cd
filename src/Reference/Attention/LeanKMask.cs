namespace Reference.Attention;

/// <summary>
/// LeanK's deployed mask from the learned channel importances alpha (CLI algorithm <c>leank-mask</c>,
/// proofs/attention-sparse.md, Definition: LeanK mask): a global quantile threshold, per-head counts rounded to the hardware alignment, and the
/// top channels of each head.
/// </summary>
/// <remarks>
/// <para>Shapes: alpha [layers, Hkv, D] to channel_mask [layers, Hkv, D].</para>
/// <para>Math:</para>
/// <code>
/// tau     = quantile(all alpha, ratio)   linear interpolation: sorted a, x = ratio (n - 1), tau = a[fl x] + (x - fl x)(a[fl x + 1] - a[fl x])
/// cnt_lh  = #{ d : alpha[l,h,d] &gt;= tau }
/// k_lh    = min(D, ((cnt_lh + align div 2) div align) * align)
/// mask    = the k_lh channels of (l, h) with the largest alpha (ties to the lower channel index)
/// </code>
/// <para>The quantile is numpy's and torch's default (<c>method="linear"</c>, <c>interpolation="linear"</c>).
/// The cap at D is this project's decision for D not a multiple of the alignment (the formula can round above D).</para>
/// <para>Source: Zhang et al. 2025, "LeanK", the second training stage's binarization.</para>
/// </remarks>
public static class LeanKMask
{
    /// <summary>The mask from alpha.</summary>
    /// <param name="alpha">Learned importances [layers, Hkv, D], finite, at least one entry.</param>
    /// <param name="ratio">The quantile level in [0, 1] (the pruned fraction before alignment). Default in the CLI 0.7.</param>
    /// <param name="align">The channel-count alignment, &gt;= 1. Default in the CLI 32.</param>
    /// <returns>channel_mask [layers, Hkv, D]; head (l, h) keeps exactly k_lh channels.</returns>
    /// <exception cref="ArgumentException">alpha is empty or not finite, ratio outside [0, 1], align &lt; 1.</exception>
    public static bool[,,] Binarize(double[,,] alpha, double ratio, int align)
    {
        // 1. Validate.
        ArgumentNullException.ThrowIfNull(alpha);
        int layers = alpha.GetLength(0), heads = alpha.GetLength(1), d = alpha.GetLength(2);
        if (alpha.Length == 0) throw new ArgumentException("alpha has no entries", nameof(alpha));
        for (int l = 0; l < layers; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int c = 0; c < d; c++)
                {
                    if (!double.IsFinite(alpha[l, h, c]))
                        throw new ArgumentException($"alpha[{l}, {h}, {c}] is {AttentionCore.Describe(alpha[l, h, c])}", nameof(alpha));
                }
            }
        }

        if (!(ratio >= 0.0 && ratio <= 1.0)) throw new ArgumentException($"ratio must be in [0, 1], got {ratio}", nameof(ratio));
        if (align < 1) throw new ArgumentException($"align must be >= 1, got {align}", nameof(align));

        // 2. The global threshold.
        double tau = Threshold(alpha, ratio);

        var mask = new bool[layers, heads, d];
        for (int l = 0; l < layers; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                // 3. The aligned count of channels at or above tau.
                var row = new double[d];
                int count = 0;
                for (int c = 0; c < d; c++)
                {
                    row[c] = alpha[l, h, c];
                    if (row[c] >= tau) count++;
                }
                int keep = Math.Min(d, (count + align / 2) / align * align);

                // 4. The top channels by alpha.
                foreach (int c in Routing.Ranking.Top(row, keep)) mask[l, h, c] = true;
            }
        }

        return mask;
    }

    /// <summary>quantile(all alpha, ratio) with linear interpolation between the order statistics, evaluated as numpy's
    /// default method does (so that the threshold, and hence the counts, match numpy bit for bit).</summary>
    /// <param name="alpha">The importances [layers, Hkv, D], at least one entry.</param>
    /// <param name="ratio">The level in [0, 1].</param>
    /// <returns>tau.</returns>
    public static double Threshold(double[,,] alpha, double ratio)
    {
        ArgumentNullException.ThrowIfNull(alpha);
        var sorted = new double[alpha.Length];
        int n = 0;
        foreach (double value in alpha) sorted[n++] = value;
        Array.Sort(sorted);
        double x = ratio * (sorted.Length - 1);
        int lo = (int)Math.Floor(x);
        if (lo >= sorted.Length - 1) return sorted[^1];
        // numpy's lerp: a + (b - a) t below t = 1/2, b - (b - a)(1 - t) from 1/2 on (exact at both ends).
        double a = sorted[lo], b = sorted[lo + 1], t = x - lo;
        return t < 0.5 ? a + (b - a) * t : b - (b - a) * (1.0 - t);
    }
}
