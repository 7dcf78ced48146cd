namespace Reference.Numerics;

/// <summary>
/// Rounding a double to one of the <see cref="NumberFormat"/>s, and the constants of each format
/// (unit roundoff, machine epsilon, largest finite value). Every rounding here is round to nearest,
/// ties to even, as IEEE 754 specifies for its default mode, with overflow to infinity and gradual underflow.
/// </summary>
/// <remarks>
/// Values are carried as <see cref="double"/> in every format: each of the four formats is a subset of binary64,
/// so "a float16 value" is simply a double that <see cref="Round"/> leaves unchanged.
/// The FlashAttention test suite uses this idea: the same computation once in the truth's precision and once in
/// the candidate's, with the gap between them as the allowed error (see <see cref="LowPrecision"/>).
/// </remarks>
public static class Precision
{
    /// <summary>
    /// The value of <paramref name="x"/> correctly rounded to <paramref name="format"/> (nearest, ties to even),
    /// returned as a double (exactly: every value of every format is a double).
    /// </summary>
    /// <param name="x">Any double. NaN stays NaN; infinities stay infinities; the sign of zero is kept.</param>
    /// <param name="format">The target format.</param>
    /// <returns>
    /// Float64: <paramref name="x"/> itself. Float32: <c>(float)x</c> (the hardware conversion, correctly rounded).
    /// Float16: <c>(Half)x</c>, which .NET rounds correctly from double (checked against an independent oracle at
    /// midpoints, one double ulp either side of them, and across the range by <c>PrecisionTests</c>). BFloat16: rounded directly from the double to 8 significant bits, not through
    /// float32, so no double rounding can occur. A finite value whose rounding would exceed the largest finite
    /// value of the format becomes an infinity of the same sign.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static double Round(double x, NumberFormat format) => format switch
    {
        NumberFormat.Float64 => x,
        NumberFormat.Float32 => (float)x,
        NumberFormat.Float16 => (double)(Half)x,
        NumberFormat.BFloat16 => RoundToBFloat16(x),
        _ => throw UnknownFormat(format),
    };

    /// <summary>
    /// The unit roundoff u = 2^-p of a format with p significant bits (the implicit bit included): the largest
    /// relative error of rounding to nearest, |Round(x) - x| &lt;= u |x|, for x in the normal range.
    /// </summary>
    /// <param name="format">The format.</param>
    /// <returns>Float64 2^-53, Float32 2^-24, Float16 2^-11, BFloat16 2^-8.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static double UnitRoundoff(NumberFormat format) => Math.ScaleB(1.0, -SignificandBits(format));

    /// <summary>
    /// Machine epsilon, the gap between 1 and the next larger value of the format: 2^(1-p) = 2u.
    /// </summary>
    /// <param name="format">The format.</param>
    /// <returns>Float64 2^-52, Float32 2^-23, Float16 2^-10, BFloat16 2^-7.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static double Epsilon(NumberFormat format) => 2.0 * UnitRoundoff(format);

    /// <summary>The largest finite value of the format, (2 - 2^(1-p)) * 2^emax.</summary>
    /// <param name="format">The format.</param>
    /// <returns>Float64 <see cref="double.MaxValue"/>, Float32 <see cref="float.MaxValue"/>, Float16 65504,
    /// BFloat16 (2 - 2^-7) * 2^127 (about 3.39e38).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static double MaxFinite(NumberFormat format) => format switch
    {
        NumberFormat.Float64 => double.MaxValue,
        NumberFormat.Float32 => float.MaxValue,
        NumberFormat.Float16 => (double)Half.MaxValue,
        NumberFormat.BFloat16 => (2.0 - Math.ScaleB(1.0, -7)) * Math.ScaleB(1.0, 127),
        _ => throw UnknownFormat(format),
    };

    /// <summary>The smallest positive normal value of the format, 2^emin. Below it the spacing of the values
    /// stops shrinking (subnormals), so the relative bound of <see cref="UnitRoundoff"/> no longer holds.</summary>
    /// <param name="format">The format.</param>
    /// <returns>Float64 2^-1022, Float32 2^-126, Float16 2^-14, BFloat16 2^-126.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static double SmallestNormal(NumberFormat format) => Math.ScaleB(1.0, MinExponent(format));

    /// <summary>
    /// The error of representing <paramref name="x"/> in <paramref name="format"/>: |Round(x, format) - x|.
    /// It is at most u |x| in the normal range, and at most half the smallest subnormal below it.
    /// </summary>
    /// <param name="x">Any double.</param>
    /// <param name="format">The format.</param>
    /// <returns>The absolute rounding error (exact: the difference of a double and its rounding is a double).
    /// +Infinity when a finite <paramref name="x"/> overflows the format; NaN for a NaN; 0 for an infinity.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="format"/> is not a defined format.</exception>
    public static double RepresentationError(double x, NumberFormat format)
    {
        double rounded = Round(x, format);
        // An infinity represents itself; subtracting would give NaN.
        if (double.IsInfinity(x) && rounded == x)
        {
            return 0.0;
        }
        return Math.Abs(rounded - x);
    }

    /// <summary>Significant bits p (the implicit leading bit included).</summary>
    internal static int SignificandBits(NumberFormat format) => format switch
    {
        NumberFormat.Float64 => 53,
        NumberFormat.Float32 => 24,
        NumberFormat.Float16 => 11,
        NumberFormat.BFloat16 => 8,
        _ => throw UnknownFormat(format),
    };

    /// <summary>The exponent emin of the smallest normal value 2^emin.</summary>
    internal static int MinExponent(NumberFormat format) => format switch
    {
        NumberFormat.Float64 => -1022,
        NumberFormat.Float32 => -126,
        NumberFormat.Float16 => -14,
        NumberFormat.BFloat16 => -126,
        _ => throw UnknownFormat(format),
    };

    /// <summary>
    /// Rounds a double to bfloat16 (p = 8, emin = -126, emax = 127) in one step.
    /// </summary>
    private static double RoundToBFloat16(double x)
    {
        // 1. NaN, infinities and zeros are their own rounding (the sign of zero is kept).
        if (!double.IsFinite(x) || x == 0.0)
        {
            return x;
        }

        // 2. The spacing ("quantum") of bfloat16 values near x: 2^(e - 7), where e is the exponent of x's binade,
        //    clamped at emin = -126 so that below 2^-126 the spacing stays 2^-133 (the subnormals).
        const int p = 8;
        int e = Math.Max(Math.ILogB(x), -126);
        int quantumExponent = e - (p - 1);

        // 3. Round x / quantum to an integer, ties to even. Scaling by a power of two is exact here
        //    (|x / quantum| < 2^8 and no intermediate leaves the double range), and so is Math.Round,
        //    so the only rounding in the whole function is this one.
        double scaled = Math.ScaleB(x, -quantumExponent);
        double rounded = Math.ScaleB(Math.Round(scaled, MidpointRounding.ToEven), quantumExponent);

        // 4. Overflow: with unbounded exponent the rounded value exceeds the largest finite bfloat16
        //    only when it is 2^128, and IEEE round-to-nearest then delivers an infinity of the same sign.
        if (Math.Abs(rounded) > MaxFinite(NumberFormat.BFloat16))
        {
            return x > 0 ? double.PositiveInfinity : double.NegativeInfinity;
        }
        return rounded;
    }

    private static ArgumentOutOfRangeException UnknownFormat(NumberFormat format) =>
        new(nameof(format), format, "unknown number format");
}
