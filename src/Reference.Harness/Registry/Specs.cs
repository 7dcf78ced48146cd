namespace Reference.Harness.Registry;

/// <summary>The value type of an algorithm parameter.</summary>
public enum ParameterKind
{
    /// <summary>A 32-bit integer.</summary>
    Int,
    /// <summary>A double, written in invariant culture.</summary>
    Double,
    /// <summary>The words true or false.</summary>
    Bool,
    /// <summary>One of a fixed list of words.</summary>
    Choice,
}

/// <summary>One parameter of an algorithm: <c>--param name=value</c> on the command line, or a key of params.json.</summary>
/// <param name="Name">The name, as in proofs/cli.md, Definition: Algorithm entries.</param>
/// <param name="Kind">The value type.</param>
/// <param name="Default">The default, written as on the command line; null when the parameter is required or
/// has a derived default (then <paramref name="Doc"/> says how it is derived).</param>
/// <param name="Doc">One line for <c>reference list</c>.</param>
/// <param name="Choices">The allowed words for <see cref="ParameterKind.Choice"/>.</param>
public sealed record ParameterSpec(string Name, ParameterKind Kind, string? Default, string Doc, IReadOnlyList<string>? Choices = null);

/// <summary>What an array may hold.</summary>
public enum ArrayKind
{
    /// <summary>Floating point: f16, bf16, f32 or f64 in, f64 out of a reference.</summary>
    Float,
    /// <summary>Integer: i32 or i64 in, i32 out.</summary>
    Integer,
    /// <summary>Boolean (numpy b1, safetensors BOOL); u1 holding 0/1 is accepted on input.</summary>
    Bool,
}

/// <summary>How a candidate's output array is judged.</summary>
public enum OutputComparison
{
    /// <summary>Bitwise equal to the reference (integers and indices).</summary>
    Exact,
    /// <summary>Within the tolerance policy for the candidate's precision.</summary>
    Tolerance,
    /// <summary>Checked directly against the inputs by the algorithm's validator (ties, many optima).</summary>
    Validated,
}

/// <summary>One input array of an algorithm.</summary>
/// <param name="Name">The array's name in the .npz or .safetensors file.</param>
/// <param name="Shape">The shape as comma-separated dimension letters, e.g. <c>N,E</c>; the same letter must have the
/// same size in every input; <c>_</c> matches any size; the empty string is a scalar.</param>
/// <param name="Kind">The allowed element kind.</param>
/// <param name="Optional">True when the array may be absent.</param>
/// <param name="Doc">One line for <c>reference list</c>.</param>
public sealed record InputSpec(string Name, string Shape, ArrayKind Kind, bool Optional, string Doc);

/// <summary>One output array of an algorithm.</summary>
/// <param name="Name">The array's name.</param>
/// <param name="Shape">The shape in dimension letters, for documentation.</param>
/// <param name="Kind">Float outputs are written as f64, integer outputs as i32, bool as b1.</param>
/// <param name="Comparison">How a candidate's version of this array is judged.</param>
/// <param name="Doc">One line for <c>reference list</c>.</param>
public sealed record OutputSpec(string Name, string Shape, ArrayKind Kind, OutputComparison Comparison, string Doc);
