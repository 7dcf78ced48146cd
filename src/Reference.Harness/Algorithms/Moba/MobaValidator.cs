using Reference.Attention;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>moba</c>'s tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
public sealed class MobaValidator : IValidator
{
    /// <summary>Judges out and lse (those the candidate contains) by the rules of <see cref="AttentionTolerance"/>, as dense attention under the chunks MoBA selects.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each tolerance output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var q = AttentionArrays.Double4(call, "q");
        var k = AttentionArrays.Double4(call, "k");
        var v = AttentionArrays.Double4(call, "v");
        var options = MobaAlgorithm.Options(call);
        var dense = new AttentionOptions { Scale = options.Scale, Mask = Moba.Mask(q, k, v, options) };
        return AttentionTolerance.Compare(context, q, k, v, options.Scale ?? 1.0 / Math.Sqrt(q.GetLength(3)), 0.0,
            AttentionBaseline.DenseRows(dense, q.GetLength(2), k.GetLength(2)));
    }
}
