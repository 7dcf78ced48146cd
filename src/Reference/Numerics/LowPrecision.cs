namespace Reference.Numerics;

/// <summary>
/// Arithmetic emulated in a lower-precision <see cref="NumberFormat"/>: every operation rounds its operands to the
/// format, computes in double, and rounds the result to the format (round to nearest, ties to even).
/// </summary>
/// <remarks>
/// <para>
/// This builds the "baseline" of the tolerance policy <c>baseline(factor)</c> (proofs/tolerance.md, Definition: Policies; after the FlashAttention
/// test suite): the same algorithm written naively, but computed in the candidate's precision. Its distance from the
/// double-precision reference measures how much error that precision forces on a straightforward implementation;
/// a candidate may then be at most <c>factor</c> times as far from the reference.
/// </para>
/// <para>
/// Add, Sub, Mul, Div and Sqrt are correctly rounded in the format: on operands of the format, the double result is
/// itself correctly rounded, and rounding it again to a format of p &lt;= 24 significant bits gives the correctly
/// rounded p-bit result, because 53 &gt;= 2p + 2 (double rounding is innocuous for these operations; Figueroa 1995).
/// Exp, Log and Tanh round the double library result (<see cref="Math.Exp"/> and friends, accurate to about one
/// ulp of double), which is correctly rounded in the format except in rare near-tie cases.
/// </para>
/// <para>Instances are immutable and thread-safe; <see cref="For"/> returns a shared one per format.</para>
/// </remarks>
public sealed class LowPrecision
{
    private static readonly LowPrecision[] Cached =
    [
        new(NumberFormat.Float64),
        new(NumberFormat.Float32),
        new(NumberFormat.Float16),
        new(NumberFormat.BFloat16),
    ];

    /// <summary>Creates the arithmetic of one format.</summary>
    /// <param name="format">The format every result is rounded to.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public LowPrecision(NumberFormat format)
    {
        if (!Enum.IsDefined(format))
        {
            throw new ArgumentOutOfRangeException(nameof(format), format, "unknown number format");
        }
        Format = format;
    }

    /// <summary>The shared instance for a format.</summary>
    /// <param name="format">The format.</param>
    /// <returns>An instance with <see cref="Format"/> = <paramref name="format"/>, the same object on every call.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static LowPrecision For(NumberFormat format) =>
        Enum.IsDefined(format)
            ? Cached[(int)format]
            : throw new ArgumentOutOfRangeException(nameof(format), format, "unknown number format");

    /// <summary>The format of every value this arithmetic produces.</summary>
    public NumberFormat Format { get; }

    /// <summary>Rounds a value to the format: <see cref="Precision.Round"/>(x, <see cref="Format"/>).</summary>
    /// <param name="x">Any double.</param>
    /// <returns>The nearest value of the format (ties to even); NaN stays NaN; overflow gives an infinity.</returns>
    public double Round(double x) => Precision.Round(x, Format);

    /// <summary>The sum a + b, rounded to the format (operands rounded first).</summary>
    /// <param name="a">The first operand.</param>
    /// <param name="b">The second operand.</param>
    /// <returns>Round(Round(a) + Round(b)).</returns>
    public double Add(double a, double b) => Round(Round(a) + Round(b));

    /// <summary>The difference a - b, rounded to the format (operands rounded first).</summary>
    /// <param name="a">The minuend.</param>
    /// <param name="b">The subtrahend.</param>
    /// <returns>Round(Round(a) - Round(b)).</returns>
    public double Sub(double a, double b) => Round(Round(a) - Round(b));

    /// <summary>The product a * b, rounded to the format (operands rounded first).</summary>
    /// <param name="a">The first factor.</param>
    /// <param name="b">The second factor.</param>
    /// <returns>Round(Round(a) * Round(b)).</returns>
    public double Mul(double a, double b) => Round(Round(a) * Round(b));

    /// <summary>The quotient a / b, rounded to the format (operands rounded first).</summary>
    /// <param name="a">The dividend.</param>
    /// <param name="b">The divisor.</param>
    /// <returns>Round(Round(a) / Round(b)); IEEE rules for division by zero.</returns>
    public double Div(double a, double b) => Round(Round(a) / Round(b));

    /// <summary>e^a, rounded to the format (operand rounded first).</summary>
    /// <param name="a">The exponent.</param>
    /// <returns>Round(Math.Exp(Round(a))).</returns>
    public double Exp(double a) => Round(Math.Exp(Round(a)));

    /// <summary>The natural logarithm, rounded to the format (operand rounded first).</summary>
    /// <param name="a">The argument; negative gives NaN, zero gives -Infinity.</param>
    /// <returns>Round(Math.Log(Round(a))).</returns>
    public double Log(double a) => Round(Math.Log(Round(a)));

    /// <summary>The hyperbolic tangent, rounded to the format (operand rounded first).</summary>
    /// <param name="a">The argument.</param>
    /// <returns>Round(Math.Tanh(Round(a))).</returns>
    public double Tanh(double a) => Round(Math.Tanh(Round(a)));

    /// <summary>The square root, rounded to the format (operand rounded first).</summary>
    /// <param name="a">The argument; negative gives NaN.</param>
    /// <returns>Round(Math.Sqrt(Round(a))).</returns>
    public double Sqrt(double a) => Round(Math.Sqrt(Round(a)));

    /// <summary>The larger of a and b, after rounding both to the format (exact: no further rounding needed).</summary>
    /// <param name="a">The first operand.</param>
    /// <param name="b">The second operand.</param>
    /// <returns>Math.Max(Round(a), Round(b)): NaN if either is NaN, and +0 over -0.</returns>
    public double Max(double a, double b) => Math.Max(Round(a), Round(b));

    /// <summary>
    /// The dot product sum_i x_i y_i, computed the naive way: a running sum from i = 0 upward, starting at 0,
    /// with every product and every partial sum rounded to the format (no fused multiply-add, no wider accumulator).
    /// </summary>
    /// <param name="x">The first vector, length n.</param>
    /// <param name="y">The second vector, length n.</param>
    /// <returns>s_n, where s_0 = 0 and s_(i+1) = Add(s_i, Mul(x_i, y_i)). 0 for n = 0.</returns>
    /// <exception cref="ArgumentException">The vectors differ in length.</exception>
    public double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        if (x.Length != y.Length)
        {
            throw new ArgumentException($"y has length {y.Length} but x has length {x.Length}", nameof(y));
        }
        double sum = 0.0;
        for (int i = 0; i < x.Length; i++)
        {
            sum = Add(sum, Mul(x[i], y[i]));
        }
        return sum;
    }

    /// <summary>
    /// The sum of the values, computed the naive way: a running sum from index 0 upward, starting at 0,
    /// each partial sum rounded to the format.
    /// </summary>
    /// <param name="values">The values, length n.</param>
    /// <returns>s_n, where s_0 = 0 and s_(i+1) = Add(s_i, values_i). 0 for n = 0.</returns>
    public double Sum(ReadOnlySpan<double> values)
    {
        double sum = 0.0;
        foreach (double v in values)
        {
            sum = Add(sum, v);
        }
        return sum;
    }

    /// <inheritdoc />
    public override string ToString() => $"LowPrecision({Format})";
}
