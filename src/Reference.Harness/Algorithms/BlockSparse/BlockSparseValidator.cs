using Reference.Attention;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>The validator of <c>blocksparse</c>'s tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
public sealed class BlockSparseValidator : IValidator
{
    /// <summary>Judges out and lse (those the candidate contains) by the rules of <see cref="AttentionTolerance"/>, as dense attention under the expanded block mask.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each tolerance output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var q = AttentionArrays.Double4(call, "q");
        var parameters = BlockSparseAlgorithm.Options(call);
        double softcap = parameters.Softcap;
        double? scale = parameters.Scale;
        // Dense attention under the expanded mask: the same allowed keys in the same order.
        var options = new AttentionOptions
        {
            Scale = scale,
            Softcap = softcap,
            Mask = BlockSparseAlgorithm.Mask(call).ToDenseMask(AttentionArrays.OptionalBool4(call, "mask")),
        };
        return AttentionTolerance.Compare(context, q, AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            scale ?? 1.0 / Math.Sqrt(q.GetLength(3)), softcap,
            AttentionBaseline.DenseRows(options, q.GetLength(2), call.Array("k").Shape[2]));
    }
}
