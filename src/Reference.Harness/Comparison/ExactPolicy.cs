namespace Reference.Harness.Comparison;

/// <summary>
/// <c>exact</c>: finite values must be bitwise equal (so +0 and -0 differ).
/// </summary>
/// <remarks>
/// Reason: for integers and indices (expert ids, slots, loads, plans) there is no rounding to tolerate; an index
/// that is off by one is simply wrong, and any tolerance would let it through. Integers up to 2^53 convert to
/// double exactly, so comparing them as doubles loses nothing. The shared NaN/Inf rules of
/// <see cref="TolerancePolicy"/> apply (they cannot arise for integer arrays).
/// </remarks>
public sealed class ExactPolicy : TolerancePolicy
{
    /// <summary>The policy name, <c>exact</c>.</summary>
    public override string Name => "exact";

    /// <summary>Compares element by element: a finite pair is a mismatch iff the two doubles differ in any bit.</summary>
    /// <inheritdoc />
    public override ComparisonReport Compare(
        string arrayName, ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected, IReadOnlyList<int> shape) =>
        Elementwise.Compare(arrayName, Name, candidate, expected, shape,
            static (_, c, r) => BitConverter.DoubleToInt64Bits(c) != BitConverter.DoubleToInt64Bits(r), detail: null);
}
