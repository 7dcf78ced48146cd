namespace Reference.Harness.Comparison;

/// <summary>One element where a candidate and the expected output disagree beyond a tolerance policy.</summary>
/// <param name="FlatIndex">The element's position in C (row-major) order, from 0.</param>
/// <param name="Index">The element's index written as a numpy tuple, e.g. <c>(2, 0)</c>, <c>(5,)</c> or <c>()</c>.</param>
/// <param name="Got">The candidate's value.</param>
/// <param name="Expected">The expected (reference) value.</param>
public sealed record Mismatch(long FlatIndex, string Index, double Got, double Expected)
{
    /// <summary>The largest |got - expected| the policy allowed at this element, when its rule is such a bound
    /// (allclose, baseline); null otherwise (exact, NaN/Inf rules, validators).</summary>
    public double? Allowed { get; init; }
}
