// The MaxScore certificate's exact rational arithmetic: every score and price is a double, so an exact dyadic rational
// m 2^q; at the common scale Q (the smallest q among them) each is the integer m 2^(q - Q). Grid converts doubles to
// those BigIntegers exactly and rounds results back to double once. Every exact value in the other
// MaxScoreCertificate.*.cs files is at this scale. The certificate's own arithmetic, independent of the solvers'.

using System.Numerics;

namespace Reference.Harness.Algorithms;

public static partial class MaxScoreCertificate
{
    /// <summary>Doubles as integers at one binary scale 2^Q, Q the smallest exponent among the values (own arithmetic, on purpose).</summary>
    private sealed class Grid
    {
        private readonly int q;

        public Grid(IEnumerable<double> values)
        {
            int smallest = int.MaxValue;
            foreach (double v in values)
            {
                if (v != 0)
                {
                    smallest = Math.Min(smallest, Split(v).Exponent);
                }
            }
            q = smallest == int.MaxValue ? 0 : smallest;
        }

        /// <summary>The integer X with x = X 2^Q, exactly.</summary>
        public BigInteger Of(double x)
        {
            if (x == 0)
            {
                return BigInteger.Zero;
            }
            var (mantissa, exponent) = Split(x);
            return new BigInteger(mantissa) << (exponent - q);
        }

        /// <summary>X 2^Q rounded to the nearest double (ties to even), subnormal range included.</summary>
        public double ToDouble(BigInteger value)
        {
            if (value.IsZero)
            {
                return 0.0;
            }
            int sign = value.Sign;
            var a = BigInteger.Abs(value);
            long length = (long)a.GetBitLength();
            long top = length - 1 + q;           // the binary exponent of the leading bit
            if (top > 1023)
            {
                return sign * double.PositiveInfinity;
            }
            long precision = top >= -1022 ? 53 : 53 - (-1022 - top);
            long shift = length - precision;
            if (shift <= 0)
            {
                return sign * Math.ScaleB((double)(long)a, q);
            }
            var kept = a >> (int)shift;
            var rest = a - (kept << (int)shift);
            var half = BigInteger.One << (int)(shift - 1);
            if (rest > half || (rest == half && !kept.IsEven))
            {
                kept += 1;
            }
            return sign * Math.ScaleB((double)(long)kept, (int)(q + shift));
        }

        /// <summary>x = Mantissa 2^Exponent with an integer mantissa (signed).</summary>
        private static (long Mantissa, int Exponent) Split(double x)
        {
            long bits = BitConverter.DoubleToInt64Bits(x);
            bool negative = bits < 0;
            int biased = (int)((bits >> 52) & 0x7FF);
            long fraction = bits & 0xFFFFFFFFFFFFFL;
            long mantissa = biased == 0 ? fraction : fraction | (1L << 52);
            int exponent = biased == 0 ? -1074 : biased - 1075;
            return (negative ? -mantissa : mantissa, exponent);
        }
    }
}
