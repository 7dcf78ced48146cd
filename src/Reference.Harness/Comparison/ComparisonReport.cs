using System.Globalization;

namespace Reference.Harness.Comparison;

/// <summary>
/// The outcome of comparing one candidate output array with the expected one under a <see cref="TolerancePolicy"/>:
/// the verdict, the mismatch counts (NaN and Inf mismatches also counted apart), the largest errors and the first
/// mismatches. What a report must carry: proofs/tolerance.md, Definition: Reports; the gpu-mode reference-kernels
/// checkers are the model (a yes/no is not enough).
/// </summary>
public sealed record ComparisonReport
{
    /// <summary>How many mismatches <see cref="FirstMismatches"/> keeps at most.</summary>
    public const int MaxListedMismatches = 5;

    /// <summary>The output array's name, as in proofs/cli.md, Definition: Algorithm entries (<c>experts</c>, <c>weights</c>, <c>out</c>, ...).</summary>
    public string ArrayName { get; init; } = "";

    /// <summary>The policy's name, e.g. <c>allclose(atol=1e-05, rtol=1.3e-06)</c>; it parses back with
    /// <see cref="TolerancePolicy.Parse(string)"/>.</summary>
    public string PolicyName { get; init; } = "";

    /// <summary>True iff there is no mismatch of any kind (<see cref="MismatchCount"/> = 0).
    /// Every policy reports at least one mismatch when its criterion fails.</summary>
    public bool Passed => MismatchCount == 0;

    /// <summary>The number of elements compared (the product of the shape).</summary>
    public long Count { get; init; }

    /// <summary>All mismatches: ordinary ones plus <see cref="NaNMismatches"/> plus <see cref="InfMismatches"/>.</summary>
    public long MismatchCount { get; init; }

    /// <summary>Elements where exactly one side is NaN.</summary>
    public long NaNMismatches { get; init; }

    /// <summary>Elements where neither side is NaN, at least one is infinite, and they differ
    /// (an infinity against a finite value, or +Inf against -Inf).</summary>
    public long InfMismatches { get; init; }

    /// <summary>max |c - r| over the elements where both sides are finite (0 when there are none).</summary>
    public double MaxAbsError { get; init; }

    /// <summary>max |c - r| / |r| over the elements where both sides are finite and r != 0 (0 when there are none).
    /// Elements with r = 0 are left out, as numpy's <c>assert_allclose</c> does; <see cref="MaxAbsError"/> covers them.</summary>
    public double MaxRelError { get; init; }

    /// <summary>The first <see cref="MaxListedMismatches"/> mismatches of any kind, in C order.</summary>
    public IReadOnlyList<Mismatch> FirstMismatches { get; init; } = [];

    /// <summary>
    /// Why the array could not be compared at all (a wrong shape, or a float array where the algorithm outputs integers):
    /// an implementation bug, so the report fails. Null when the array was compared.
    /// </summary>
    public string? Problem { get; init; }

    /// <summary>True for integer and boolean outputs (indices, counts, masks): their summary has no errors, only counts,
    /// because a relative error of an index means nothing.</summary>
    public bool IsIntegral { get; init; }

    /// <summary>
    /// A failing report for an array that could not be compared (see <see cref="Problem"/>).
    /// </summary>
    /// <param name="arrayName">The output's name.</param>
    /// <param name="count">The number of elements the candidate array holds.</param>
    /// <param name="problem">What is wrong, e.g. "has shape (4, 3) but the reference gives (4, 2)".</param>
    /// <returns>The report: one mismatch, the problem, no errors.</returns>
    public static ComparisonReport Rejected(string arrayName, long count, string problem) => new()
    {
        ArrayName = arrayName,
        PolicyName = "rejected",
        Count = count,
        MismatchCount = 1,
        Problem = problem,
    };

    /// <summary>
    /// How close to its bound the candidate is: max |c - r| / allowed(r) over the finite pairs, where the policy passes a
    /// finite pair iff |c - r| &lt;= allowed(r) (below 1 passes; 0 when every pair is equal). Null for policies without
    /// such an elementwise bound (exact, relative-rms, validators that judge structure).
    /// </summary>
    public double? Margin { get; init; }

    /// <summary>Policy-specific quantities behind the verdict (e.g. the baseline's error, floor and bound),
    /// or null when the policy has none to add.</summary>
    public string? Detail { get; init; }

    /// <summary>
    /// One line for a terminal or a CI log, e.g. <c>PASS experts exact max_abs=0 max_rel=0 mismatches=0/12</c>:
    /// the verdict, the array, the policy, the largest errors at full (round-trip) precision (not for
    /// <see cref="IsIntegral"/> arrays), and the mismatch count
    /// out of the element count; then <c>margin=X</c> (error / bound, 3 digits) when the policy has one, and
    /// <c>nan=N inf=M</c> when either is non-zero.
    /// </summary>
    /// <returns>The summary line, without a line break.</returns>
    public string Summary()
    {
        if (Problem is not null)
        {
            return $"FAIL {ArrayName} {Problem}";
        }
        string line = IsIntegral
            ? $"{(Passed ? "PASS" : "FAIL")} {ArrayName} {PolicyName} mismatches={MismatchCount}/{Count}"
            : $"{(Passed ? "PASS" : "FAIL")} {ArrayName} {PolicyName} max_abs={Number(MaxAbsError)} "
              + $"max_rel={Number(MaxRelError)} mismatches={MismatchCount}/{Count}";
        if (Margin is { } margin)
        {
            line += $" margin={margin.ToString("G3", CultureInfo.InvariantCulture)}";
        }
        if (NaNMismatches != 0 || InfMismatches != 0)
        {
            line += $" nan={NaNMismatches} inf={InfMismatches}";
        }
        return line;
    }

    /// <inheritdoc />
    public override string ToString() => Summary();

    /// <summary>
    /// The failing elements for a terminal, one per line and indented: index, got, expected and (when the policy has
    /// a bound) allowed, at full precision; then how many more there are. Empty for a passing report.
    /// </summary>
    /// <param name="indent">The prefix of every line.</param>
    /// <returns>The lines.</returns>
    public IEnumerable<string> MismatchLines(string indent = "  ")
    {
        foreach (var m in FirstMismatches)
        {
            string allowed = m.Allowed is { } a ? $" allowed {Number(a)}" : "";
            string error = !IsIntegral && double.IsFinite(m.Got) && double.IsFinite(m.Expected) ? $" |error| {Number(Math.Abs(m.Got - m.Expected))}" : "";
            yield return $"{indent}at {m.Index}: got {Number(m.Got)} expected {Number(m.Expected)}{error}{allowed}";
        }
        long more = MismatchCount - FirstMismatches.Count;
        if (more > 0 && FirstMismatches.Count > 0)
        {
            yield return $"{indent}... and {more} more";
        }
    }

    /// <summary>A double at full precision, invariant culture, exponent as <c>e-05</c>: the shortest form that
    /// parses back to the same double.</summary>
    /// <remarks>.NET's "R" (shortest round-trip) output does not always parse back: for 2^-25 it prints
    /// 2.980232238769531E-08, which is nearer to the double below (the lower neighbour of a power of two is
    /// half as far away). Such values fall back to the 17 significant digits of "G17", which always round-trip.</remarks>
    internal static string Number(double value)
    {
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        if (double.IsFinite(value)
            && BitConverter.DoubleToInt64Bits(double.Parse(text, CultureInfo.InvariantCulture))
               != BitConverter.DoubleToInt64Bits(value))
        {
            text = value.ToString("G17", CultureInfo.InvariantCulture);
        }
        return text.Replace('E', 'e');
    }
}
