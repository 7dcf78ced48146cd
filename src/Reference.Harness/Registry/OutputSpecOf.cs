using Reference.Harness.Tensors;

namespace Reference.Harness.Registry;

/// <summary>
/// One output declared against an algorithm's result record: its <see cref="OutputSpec"/> (name, shape expression, kind of
/// dtype, how a candidate's version is judged) and where the result holds it. Every path returns the same result record;
/// <see cref="AlgorithmEntry{TOptions, TResult}"/> turns it into named arrays and checks each against the spec.
/// </summary>
/// <typeparam name="TResult">The result record.</typeparam>
/// <param name="Spec">The output's spec.</param>
/// <param name="Get">The array in a result; null when this result does not have the output (an output of some modes only).</param>
public sealed record OutputSpec<TResult>(OutputSpec Spec, Func<TResult, NdArray?> Get)
{
    /// <summary>Declares an output.</summary>
    /// <param name="name">The array's name.</param>
    /// <param name="shape">The shape in dimension letters: input dimensions, integer parameters, or letters bound by the
    /// outputs themselves (the same letter must have the same size in every output); the empty string is a scalar.</param>
    /// <param name="kind">The kind of dtype every path must give it.</param>
    /// <param name="comparison">How a candidate's version is judged.</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="get">The array in a result.</param>
    /// <returns>The declaration.</returns>
    public static OutputSpec<TResult> Of(
        string name, string shape, ArrayKind kind, OutputComparison comparison, string doc, Func<TResult, NdArray?> get) =>
        new(new OutputSpec(name, shape, kind, comparison, doc), get);
}
