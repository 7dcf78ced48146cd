using Reference.Harness.Comparison;

namespace Reference.Harness.Registry;

/// <summary>
/// The one kind of validator: judges a candidate's outputs with the whole check (the call, the reference's outputs, the
/// candidate's outputs and their precisions) and returns one <see cref="ComparisonReport"/> per output it judges.
/// An algorithm uses one for its <see cref="OutputComparison.Validated"/> outputs (<see cref="Algorithm.Validate"/>:
/// ties, many optima, outputs judged directly against the inputs) and may use one for its
/// <see cref="OutputComparison.Tolerance"/> outputs (<see cref="Algorithm.CompareInContext"/>: bounds that depend on the
/// inputs, such as the <c>baseline</c> policy (proofs/tolerance.md, Definition: Policies) or a derived error bound).
/// </summary>
public interface IValidator
{
    /// <summary>Judges the candidate.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each output judged that the candidate contains, named after it.</returns>
    IReadOnlyList<ComparisonReport> Judge(CheckContext context);
}
