using Reference.Numerics;

namespace Reference.Harness.Comparison;

/// <summary>
/// <c>baseline(format, factor)</c>: the FlashAttention rule. With ref64 the double-precision reference and base the
/// same algorithm computed naively in the candidate's format (<see cref="LowPrecision"/>, rounding after every
/// operation), the candidate passes iff
/// max_i |cand_i - ref64_i| &lt;= bound = factor * max_i |base_i - ref64_i| + floor,
/// where floor = 2 max_i |Round(ref64_i, format) - ref64_i| is twice the error of merely storing the reference in
/// the format.
/// </summary>
/// <remarks>
/// <para>
/// Reason: a fixed tolerance is either too loose for small problems or too tight for large ones, because the error a
/// low-precision computation must have grows with the problem (sequence length, reduction size). The baseline
/// measures that error on the very inputs under test, so the tolerance is derived rather than picked:
/// the candidate may be at most <see cref="Factor"/> times as inaccurate as the straightforward implementation in its
/// own precision. The floor keeps the bound from collapsing to zero when the baseline happens to be exact: a
/// candidate that returns its values in the format cannot do better than rounding the exact answer.
/// </para>
/// <para>
/// An element is a mismatch iff |cand_i - ref64_i| &gt; bound, so the report fails iff the maximum does.
/// The NaN/Inf rules of <see cref="TolerancePolicy"/> apply to (cand_i, ref64_i). Elements where base_i or ref64_i is
/// not finite are left out of the base error; elements where ref64_i is not finite, or overflows the format, are left
/// out of the floor.
/// </para>
/// <para>For Float64 the baseline is the reference itself and the floor is 0, so the rule demands
/// max |cand - ref64| &lt;= factor * max |base - ref64|, typically 0: bitwise agreement.</para>
/// </remarks>
public sealed class BaselinePolicy : TolerancePolicy
{
    /// <summary>The default factor, 2, as in the FlashAttention tests.</summary>
    public const double DefaultFactor = 2.0;

    /// <summary>Creates the policy for candidates computed in <paramref name="format"/>.</summary>
    /// <param name="format">The candidate's format, which the baseline is also computed in.</param>
    /// <param name="factor">How many times the baseline's error the candidate may have; finite and &gt;= 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">The format is undefined, or the factor is negative, infinite or NaN.</exception>
    public BaselinePolicy(NumberFormat format, double factor = DefaultFactor)
    {
        if (!Enum.IsDefined(format))
        {
            throw new ArgumentOutOfRangeException(nameof(format), format, "unknown number format");
        }
        if (!(factor >= 0.0 && double.IsFinite(factor)))
        {
            throw new ArgumentOutOfRangeException(nameof(factor), factor, "the factor must be finite and >= 0");
        }
        Format = format;
        Factor = factor;
    }

    /// <summary>The candidate's format.</summary>
    public NumberFormat Format { get; }

    /// <summary>The multiple of the baseline's error the candidate may have.</summary>
    public double Factor { get; }

    /// <summary>The policy name, e.g. <c>baseline(bf16, factor=2)</c>.</summary>
    public override string Name => $"baseline({FormatNames.Short(Format)}, factor={ComparisonReport.Number(Factor)})";

    /// <summary>The baseline's error, max_i |base_i - ref64_i| over the elements where both are finite (0 if none).</summary>
    /// <param name="reference64">The double-precision reference, flat.</param>
    /// <param name="baseline">The naive low-precision computation, same length.</param>
    /// <returns>The largest absolute difference.</returns>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public static double BaseError(ReadOnlySpan<double> reference64, ReadOnlySpan<double> baseline)
    {
        if (reference64.Length != baseline.Length)
        {
            throw new ArgumentException(
                $"the baseline has {baseline.Length} elements but the reference has {reference64.Length}", nameof(baseline));
        }
        double max = 0.0;
        for (int i = 0; i < reference64.Length; i++)
        {
            if (double.IsFinite(reference64[i]) && double.IsFinite(baseline[i]))
            {
                max = Math.Max(max, Math.Abs(baseline[i] - reference64[i]));
            }
        }
        return max;
    }

    /// <summary>
    /// The floor, 2 max_i |Round(ref64_i, format) - ref64_i| over the finite ref64_i whose rounding is finite (0 if none).
    /// </summary>
    /// <param name="reference64">The double-precision reference, flat.</param>
    /// <returns>Twice the largest representation error of the reference in <see cref="Format"/>.</returns>
    public double Floor(ReadOnlySpan<double> reference64)
    {
        double max = 0.0;
        foreach (double r in reference64)
        {
            if (double.IsFinite(r))
            {
                double error = Precision.RepresentationError(r, Format);
                if (double.IsFinite(error))
                {
                    max = Math.Max(max, error);
                }
            }
        }
        return 2.0 * max;
    }

    /// <summary>The bound factor * <see cref="BaseError"/> + <see cref="Floor"/>.</summary>
    /// <param name="reference64">The double-precision reference, flat.</param>
    /// <param name="baseline">The naive low-precision computation, same length.</param>
    /// <returns>The largest |cand_i - ref64_i| a passing candidate may have.</returns>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public double Bound(ReadOnlySpan<double> reference64, ReadOnlySpan<double> baseline) =>
        Factor * BaseError(reference64, baseline) + Floor(reference64);

    /// <summary>
    /// Compares a candidate with the double-precision reference, with the bound derived from the baseline.
    /// </summary>
    /// <param name="arrayName">The output's name, for the report and error messages.</param>
    /// <param name="candidate">The candidate's values, flat in C order.</param>
    /// <param name="reference64">The reference computed in double, same length and order.</param>
    /// <param name="baseline">The same algorithm computed naively in <see cref="Format"/>, same length and order.</param>
    /// <param name="shape">The array's shape, outermost first.</param>
    /// <returns>The report; its <see cref="ComparisonReport.Detail"/> gives the base error, the floor and the bound.</returns>
    /// <exception cref="ArgumentException">The lengths differ from each other or from the shape's product.</exception>
    public ComparisonReport Compare(
        string arrayName,
        ReadOnlySpan<double> candidate,
        ReadOnlySpan<double> reference64,
        ReadOnlySpan<double> baseline,
        IReadOnlyList<int> shape)
    {
        ArgumentNullException.ThrowIfNull(arrayName);
        if (baseline.Length != reference64.Length)
        {
            throw new ArgumentException(
                $"{arrayName}: the baseline has {baseline.Length} elements but the reference has {reference64.Length}",
                nameof(baseline));
        }
        double baseError = BaseError(reference64, baseline);
        double floor = Floor(reference64);
        double bound = Factor * baseError + floor;
        string detail = $"base_error={ComparisonReport.Number(baseError)} floor={ComparisonReport.Number(floor)} "
                        + $"bound={ComparisonReport.Number(bound)}";
        return Elementwise.Compare(arrayName, Name, candidate, reference64, shape,
            (_, c, r) => Math.Abs(c - r) > bound, detail, (_, _) => bound);
    }

    /// <summary>Not available: this policy needs the baseline. Use the overload that takes it.</summary>
    /// <exception cref="InvalidOperationException">Always.</exception>
    public override ComparisonReport Compare(
        string arrayName, ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected, IReadOnlyList<int> shape) =>
        throw new InvalidOperationException(
            $"{Name} for '{arrayName}' needs the baseline (the algorithm computed naively in {FormatNames.Short(Format)}); "
            + "call Compare(arrayName, candidate, reference64, baseline, shape)");
}
