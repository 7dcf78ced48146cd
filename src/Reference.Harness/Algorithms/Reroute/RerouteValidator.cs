using Reference.Harness.Comparison;
using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>reroute</c>'s tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
public sealed class RerouteValidator : IValidator
{
    /// <summary>Judges weights (when the candidate contains them) under the routing weights tolerance; the index outputs are compared exactly.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each tolerance output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Candidate.TryGetValue("weights", out var w)
            ? [RoutingSupport.WeightsReport("weights", w.ToDoubles(), context.Expected["weights"].ToDoubles(),
                context.Expected["weights"].Shape, context.FormatOf("weights"), context.Call.Array("logits").Shape[1] + RerouteAlgorithm.Options(context.Call).K)]
            : [];
    }
}
