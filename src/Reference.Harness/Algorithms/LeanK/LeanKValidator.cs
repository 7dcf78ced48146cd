using Reference.Harness.Comparison;
using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>leank</c>'s tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
public sealed class LeanKValidator : IValidator
{
    /// <summary>Judges out and lse (those the candidate contains) by the rules of <see cref="AttentionTolerance"/>, the baseline reading only the channels LeanK keeps.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each tolerance output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var q = AttentionArrays.Double4(call, "q");
        var k = AttentionArrays.Double4(call, "k");
        var options = LeanKAlgorithm.Options(call);
        var (rows, pruned) = LeanKAlgorithm.BaselineRows(k, AttentionArrays.Bool2(call, "channel_mask"), options, q.GetLength(1), q.GetLength(2));
        return AttentionTolerance.Compare(context, q, k, AttentionArrays.Double4(call, "v"),
            options.Scale ?? 1.0 / Math.Sqrt(q.GetLength(3)), 0.0, rows, pruned);
    }
}
