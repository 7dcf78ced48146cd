using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>linear</c>'s tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
public sealed class LinearValidator : IValidator
{
    /// <summary>Judges out: against the calibrated baseline (<see cref="LinearBaseline"/>) for a float32, float16 or bfloat16 candidate, within the derived bound of <see cref="LinearErrorBound"/> for a float64 one.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each tolerance output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var expected = context.Expected["out"];
        var candidate = context.Candidate["out"].ToDoubles();
        var format = context.FormatOf("out");
        var q = AttentionArrays.Double4(call, "q");
        var k = AttentionArrays.Double4(call, "k");
        var v = AttentionArrays.Double4(call, "v");
        var options = LinearAlgorithm.Options(call);
        if (format != NumberFormat.Float64)
        {
            return [LinearAlgorithm.CompareToBaseline(q, k, v, options, format, candidate, expected.ToDoubles(), expected.Shape)];
        }
        double bound = LinearErrorBound.Bound(q, k, v, options, format) + LinearErrorBound.Bound(q, k, v, options, NumberFormat.Float64);
        bool vacuous = !double.IsFinite(bound);
        var report = new AllClosePolicy(vacuous ? double.MaxValue : bound, 0.0).Compare("out", candidate, expected.ToDoubles(), expected.Shape);
        return [report with
        {
            Detail = $"derived_bound({Formats.Name(format)}) u={ComparisonReport.Number(Precision.UnitRoundoff(format))} "
                     + (vacuous ? "bound=vacuous (a denominator within its error of 0)" : $"bound={ComparisonReport.Number(bound)}"),
        }];
    }
}
