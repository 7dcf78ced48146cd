namespace Reference.Harness.Comparison;

/// <summary>
/// <c>relative-rms(bound)</c>: ||c - r||_2 / ||r||_2 &lt;= bound over the finite pairs, the rule of the
/// native-sparse-attention test suite.
/// </summary>
/// <remarks>
/// <para>
/// Reason: sparse-attention kernels accumulate in low precision over long sequences, and a few outputs can carry
/// a large relative error where the true value is tiny, without the output as a whole being wrong. A norm-wise
/// relative error judges the whole array, is invariant under scaling both arrays, and is not dominated by the
/// elements where r is close to zero.
/// </para>
/// <para>
/// Mismatches: the NaN/Inf rules of <see cref="TolerancePolicy"/> apply to each element (such pairs are left out
/// of both norms). When the norm test fails, the finite elements with |c_i - r_i| &gt; bound * rms(r) are
/// reported as mismatches, where rms(r) = ||r||_2 / sqrt(n) over the n finite pairs: the element of largest
/// error always qualifies (its squared error is at least the mean squared error, which exceeds
/// bound^2 ||r||^2 / n), so a failed report has MismatchCount &gt;= 1. When the test passes, no finite element
/// is a mismatch. If ||r||_2 = 0, the ratio is 0 when c = r on every finite pair and +Infinity otherwise.
/// </para>
/// </remarks>
public sealed class RelativeRmsPolicy : TolerancePolicy
{
    /// <summary>Creates the policy ||c - r||_2 / ||r||_2 &lt;= bound.</summary>
    /// <param name="bound">The largest allowed norm-wise relative error, finite and &gt;= 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bound"/> is negative, infinite or NaN.</exception>
    public RelativeRmsPolicy(double bound)
    {
        if (!(bound >= 0.0 && double.IsFinite(bound)))
        {
            throw new ArgumentOutOfRangeException(nameof(bound), bound, "the bound must be finite and >= 0");
        }
        Bound = bound;
    }

    /// <summary>The largest allowed ||c - r||_2 / ||r||_2.</summary>
    public double Bound { get; }

    /// <summary>The policy name, e.g. <c>relative-rms(0.01)</c>.</summary>
    public override string Name => $"relative-rms({ComparisonReport.Number(Bound)})";

    /// <summary>
    /// The norm-wise relative error ||c - r||_2 / ||r||_2 over the pairs where both values are finite.
    /// The sums of squares are scaled by the largest magnitude involved, so they neither overflow nor underflow,
    /// and scaling both arrays by a power of two leaves the result unchanged bit for bit.
    /// </summary>
    /// <param name="candidate">The candidate's values.</param>
    /// <param name="expected">The reference's values, same length.</param>
    /// <returns>The ratio; 0 when there is no finite pair or every finite pair is equal; +Infinity when
    /// ||r||_2 = 0 but some difference is not, or when a difference overflows.</returns>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public static double RelativeError(ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected)
    {
        if (candidate.Length != expected.Length)
        {
            throw new ArgumentException(
                $"the candidate has {candidate.Length} elements but expected has {expected.Length}", nameof(candidate));
        }
        // 1. The largest |c - r| and |r| over the finite pairs: the scale of both sums.
        double scale = 0.0;
        for (int i = 0; i < candidate.Length; i++)
        {
            if (Elementwise.Classify(candidate[i], expected[i]) == PairKind.Finite)
            {
                scale = Math.Max(scale, Math.Max(Math.Abs(candidate[i] - expected[i]), Math.Abs(expected[i])));
            }
        }
        if (scale == 0.0)
        {
            return 0.0;
        }
        if (double.IsInfinity(scale))
        {
            return double.PositiveInfinity; // a difference of two finite values overflowed
        }
        // 2. sum (d_i / scale)^2 and sum (r_i / scale)^2, each term <= 1.
        double differences = 0.0, reference = 0.0;
        for (int i = 0; i < candidate.Length; i++)
        {
            if (Elementwise.Classify(candidate[i], expected[i]) == PairKind.Finite)
            {
                double d = (candidate[i] - expected[i]) / scale;
                double r = expected[i] / scale;
                differences += d * d;
                reference += r * r;
            }
        }
        // 3. The ratio of the norms (the scale cancels).
        if (reference == 0.0)
        {
            return differences == 0.0 ? 0.0 : double.PositiveInfinity;
        }
        return Math.Sqrt(differences) / Math.Sqrt(reference);
    }

    /// <summary>Compares by the norm-wise relative error; see the remarks for which elements are reported.</summary>
    /// <inheritdoc />
    public override ComparisonReport Compare(
        string arrayName, ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected, IReadOnlyList<int> shape)
    {
        Elementwise.CheckInputs(arrayName, candidate.Length, expected.Length, shape);
        double ratio = RelativeError(candidate, expected);
        bool normPassed = ratio <= Bound;

        // The per-element threshold bound * rms(r), used only when the norm test fails. Capped just below the
        // largest finite error, so that rounding in the threshold can never leave a failed report without a mismatch.
        double threshold = double.PositiveInfinity;
        if (!normPassed)
        {
            long n = 0;
            double sumSquares = 0.0, scale = 0.0, maxError = 0.0;
            for (int i = 0; i < candidate.Length; i++)
            {
                if (Elementwise.Classify(candidate[i], expected[i]) == PairKind.Finite)
                {
                    n++;
                    scale = Math.Max(scale, Math.Abs(expected[i]));
                    maxError = Math.Max(maxError, Math.Abs(candidate[i] - expected[i]));
                }
            }
            if (scale > 0.0)
            {
                for (int i = 0; i < candidate.Length; i++)
                {
                    if (Elementwise.Classify(candidate[i], expected[i]) == PairKind.Finite)
                    {
                        double r = expected[i] / scale;
                        sumSquares += r * r;
                    }
                }
            }
            double rms = n == 0 ? 0.0 : scale * Math.Sqrt(sumSquares / n);
            threshold = Math.Min(Bound * rms, Math.BitDecrement(maxError));
        }

        return Elementwise.Compare(arrayName, Name, candidate, expected, shape,
            (_, c, r) => Math.Abs(c - r) > threshold,
            detail: $"relative_rms={ComparisonReport.Number(ratio)} bound={ComparisonReport.Number(Bound)}");
    }
}
