using System.Globalization;

namespace Reference;

/// <summary>
/// Input checks shared by the references, with the messages of proofs/conventions.md, Definition: Bad input:
/// each names the argument and the first offending index, and is thrown as an <see cref="ArgumentException"/>
/// (or <see cref="ArgumentOutOfRangeException"/>) whose <c>ParamName</c> is the argument.
/// </summary>
public static class Guard
{
    /// <summary>Throws unless every element of a matrix is finite (no NaN, no infinity).</summary>
    /// <param name="values">The matrix to check, [rows, cols].</param>
    /// <param name="name">The argument's name, used in the message and as <c>ParamName</c>.</param>
    public static void Finite(double[,] values, string name)
    {
        ArgumentNullException.ThrowIfNull(values, name);
        for (int i = 0; i < values.GetLength(0); i++)
        {
            for (int j = 0; j < values.GetLength(1); j++)
            {
                double x = values[i, j];
                if (!double.IsFinite(x))
                {
                    throw new ArgumentException($"{name}[{i}, {j}] is {Describe(x)}; {name} must be finite", name);
                }
            }
        }
    }

    /// <summary>Throws unless every element of a vector is finite.</summary>
    /// <param name="values">The vector to check.</param>
    /// <param name="name">The argument's name.</param>
    public static void Finite(IReadOnlyList<double> values, string name)
    {
        ArgumentNullException.ThrowIfNull(values, name);
        for (int i = 0; i < values.Count; i++)
        {
            if (!double.IsFinite(values[i]))
            {
                throw new ArgumentException($"{name}[{i}] is {Describe(values[i])}; {name} must be finite", name);
            }
        }
    }

    /// <summary>Throws unless <paramref name="value"/> lies in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    /// <param name="value">The value to check.</param>
    /// <param name="min">The smallest allowed value.</param>
    /// <param name="max">The largest allowed value.</param>
    /// <param name="name">The argument's name.</param>
    public static void InRange(int value, int min, int max, string name)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} = {value} is outside {min}..{max}");
        }
    }

    /// <summary>Throws unless a vector has the expected length.</summary>
    /// <param name="actual">The vector's length.</param>
    /// <param name="expected">The length the other arguments imply.</param>
    /// <param name="name">The argument's name.</param>
    /// <param name="because">What implies the expected length, e.g. "logits has E = 8 columns".</param>
    public static void Length(int actual, int expected, string name, string because)
    {
        if (actual != expected)
        {
            throw new ArgumentException($"{name} has length {actual} but {because}", name);
        }
    }

    /// <summary>The word for a non-finite value: NaN, +Inf or -Inf.</summary>
    public static string Describe(double x) =>
        double.IsNaN(x) ? "NaN" : double.IsPositiveInfinity(x) ? "+Inf" : double.IsNegativeInfinity(x) ? "-Inf"
        : x.ToString("R", CultureInfo.InvariantCulture);
}
