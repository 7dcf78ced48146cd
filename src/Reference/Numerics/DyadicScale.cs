using System.Numerics;

namespace Reference.Numerics;

/// <summary>
/// Doubles as exact integers at one common binary scale. Every finite double is m 2^q with integers m and q (a dyadic
/// rational), so with Q = the smallest q among a set of doubles, each of them is X 2^Q for the integer X = m 2^(q - Q).
/// Sums and differences of such integers are exact, which lets the exact MaxScore and BASE references compare totals
/// of double scores without rounding.
/// </summary>
public sealed class DyadicScale
{
    /// <summary>Prepares the common scale of a set of finite doubles.</summary>
    /// <param name="values">The doubles that will be converted (zeros do not constrain the scale).</param>
    /// <exception cref="ArgumentException">A value is NaN or infinite.</exception>
    public DyadicScale(IEnumerable<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        int smallest = int.MaxValue;
        foreach (double v in values)
        {
            if (!double.IsFinite(v))
            {
                throw new ArgumentException($"{Guard.Describe(v)} has no exact dyadic value", nameof(values));
            }
            if (v != 0)
            {
                smallest = Math.Min(smallest, Split(v).Exponent);
            }
        }
        Exponent = smallest == int.MaxValue ? 0 : smallest;
    }

    /// <summary>Q: an integer X stands for X 2^Q.</summary>
    public int Exponent { get; }

    /// <summary>The integer X with x = X 2^Q exactly.</summary>
    /// <param name="x">A finite double whose exponent is at least Q (any of the values the scale was made from).</param>
    /// <exception cref="ArgumentException">x is not finite or not a multiple of 2^Q.</exception>
    public BigInteger Of(double x)
    {
        if (x == 0)
        {
            return BigInteger.Zero;
        }
        if (!double.IsFinite(x))
        {
            throw new ArgumentException($"{Guard.Describe(x)} has no exact dyadic value", nameof(x));
        }
        var (mantissa, exponent) = Split(x);
        if (exponent < Exponent)
        {
            throw new ArgumentException($"{x:R} is finer than the common scale 2^{Exponent}", nameof(x));
        }
        return new BigInteger(mantissa) << (exponent - Exponent);
    }

    /// <summary>X 2^Q correctly rounded to double (nearest, ties to even; gradual underflow; overflow to infinity).</summary>
    /// <param name="value">The integer X.</param>
    /// <returns>The double nearest to X 2^Q.</returns>
    public double ToDouble(BigInteger value)
    {
        if (value.IsZero)
        {
            return 0.0;
        }
        int sign = value.Sign;
        var a = BigInteger.Abs(value);
        long length = (long)a.GetBitLength();
        long top = length - 1 + Exponent;                          // binary exponent of the leading bit
        if (top > 1023)
        {
            return sign * double.PositiveInfinity;
        }
        long precision = top >= -1022 ? 53 : 53 - (-1022 - top);   // fewer bits in the subnormal range
        long shift = length - precision;
        if (shift <= 0)
        {
            return sign * Math.ScaleB((double)(long)a, Exponent);
        }
        var kept = a >> (int)shift;
        var rest = a - (kept << (int)shift);
        var half = BigInteger.One << (int)(shift - 1);
        if (rest > half || (rest == half && !kept.IsEven))
        {
            kept += 1;
        }
        return sign * Math.ScaleB((double)(long)kept, (int)(Exponent + shift));
    }

    /// <summary>x = Mantissa 2^Exponent with a signed integer mantissa of at most 53 bits.</summary>
    /// <param name="x">A finite double.</param>
    public static (long Mantissa, int Exponent) Split(double x)
    {
        long bits = BitConverter.DoubleToInt64Bits(x);
        int biased = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        long mantissa = biased == 0 ? fraction : fraction | (1L << 52);
        int exponent = biased == 0 ? -1074 : biased - 1075;
        return (bits < 0 ? -mantissa : mantissa, exponent);
    }
}
