using Reference.Harness.Comparison;
using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>attention</c>'s tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
public sealed class AttentionValidator : IValidator
{
    /// <summary>Judges out and lse (those the candidate contains) by the rules of <see cref="AttentionTolerance"/>: dense attention with the call's mask, causality and window.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each tolerance output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var options = AttentionAlgorithm.Options(call);
        var q = AttentionArrays.Double4(call, "q");
        return AttentionTolerance.Compare(context, q, AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            options.Scale ?? 1.0 / Math.Sqrt(q.GetLength(3)), options.Softcap,
            AttentionBaseline.DenseRows(options, q.GetLength(2), call.Array("k").Shape[2]));
    }
}
