using Reference.Numerics;

namespace Reference.Harness.Comparison;

/// <summary>
/// <c>allclose(atol, rtol)</c>: every finite pair satisfies |c - r| &lt;= atol + rtol |r|
/// (the rule of numpy's <c>isclose</c> with the reference as the second argument, and of <c>torch.testing</c>).
/// </summary>
/// <remarks>
/// Reason: an optimized kernel evaluates the same formula in another order and another precision, so each output
/// carries a few roundings of the candidate's format relative to its magnitude (rtol), and outputs near zero that
/// arise from cancellation carry an absolute error that no relative bound can cover (atol). The
/// presets of <see cref="For"/> express this per candidate format.
/// </remarks>
public sealed class AllClosePolicy : TolerancePolicy
{
    /// <summary>Creates the policy |c - r| &lt;= atol + rtol |r|.</summary>
    /// <param name="atol">The absolute tolerance, finite and &gt;= 0.</param>
    /// <param name="rtol">The relative tolerance, finite and &gt;= 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">A tolerance is negative, infinite or NaN.</exception>
    public AllClosePolicy(double atol, double rtol)
    {
        if (!(atol >= 0.0 && double.IsFinite(atol)))
        {
            throw new ArgumentOutOfRangeException(nameof(atol), atol, "atol must be finite and >= 0");
        }
        if (!(rtol >= 0.0 && double.IsFinite(rtol)))
        {
            throw new ArgumentOutOfRangeException(nameof(rtol), rtol, "rtol must be finite and >= 0");
        }
        Atol = atol;
        Rtol = rtol;
    }

    /// <summary>The absolute tolerance.</summary>
    public double Atol { get; }

    /// <summary>The relative tolerance.</summary>
    public double Rtol { get; }

    /// <summary>The policy name, e.g. <c>allclose(atol=1e-05, rtol=1.3e-06)</c>, numbers at full precision.</summary>
    public override string Name =>
        $"allclose(atol={ComparisonReport.Number(Atol)}, rtol={ComparisonReport.Number(Rtol)})";

    /// <summary>
    /// The preset for a candidate computed in <paramref name="format"/>.
    /// </summary>
    /// <param name="format">The candidate's format.</param>
    /// <returns>
    /// <list type="bullet">
    /// <item>Float64: atol 1e-12, rtol 1e-10. A double candidate differs from the double reference only by the order
    /// of operations and by last-ulp differences of library functions. rtol = 1e-10 (about 2^20 u for u = 2^-53)
    /// leaves room for reordered reductions of 10^5 terms with a condition number near 10, yet is a thousand times
    /// tighter than torch's float64 default (1e-7), which would hide real defects at the 1e-8 level. atol = 1e-12
    /// covers results that cancel to about zero from terms of order 1.</item>
    /// <item>Float32: atol 1e-5, rtol 1.3e-6, the <c>torch.testing.assert_close</c> defaults (rtol about 22 u,
    /// u = 2^-24): room for a reduction's worth of roundings.</item>
    /// <item>Float16: atol 1e-5, rtol 1e-3, the torch defaults (rtol about 2 u, u = 2^-11).</item>
    /// <item>BFloat16: atol 1e-5, rtol 1.6e-2, the torch defaults (rtol about 4 u, u = 2^-8).</item>
    /// </list>
    /// For low-precision candidates whose error grows with the problem size, prefer <see cref="BaselinePolicy"/>,
    /// which derives the tolerance instead of fixing it.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static AllClosePolicy For(NumberFormat format) => format switch
    {
        NumberFormat.Float64 => new AllClosePolicy(1e-12, 1e-10),
        NumberFormat.Float32 => new AllClosePolicy(1e-5, 1.3e-6),
        NumberFormat.Float16 => new AllClosePolicy(1e-5, 1e-3),
        NumberFormat.BFloat16 => new AllClosePolicy(1e-5, 1.6e-2),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown number format"),
    };

    /// <summary>Compares element by element: a finite pair is a mismatch iff |c - r| &gt; atol + rtol |r|
    /// (the bound evaluated in double).</summary>
    /// <inheritdoc />
    public override ComparisonReport Compare(
        string arrayName, ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected, IReadOnlyList<int> shape)
    {
        double atol = Atol, rtol = Rtol;
        return Elementwise.Compare(arrayName, Name, candidate, expected, shape,
            (_, c, r) => !(Math.Abs(c - r) <= atol + rtol * Math.Abs(r)), detail: null, (_, r) => atol + rtol * Math.Abs(r));
    }
}
