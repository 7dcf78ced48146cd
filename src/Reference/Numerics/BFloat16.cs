using System.Globalization;

namespace Reference.Numerics;

/// <summary>
/// The bfloat16 format (1 sign bit, 8 exponent bits, 7 mantissa bits): the upper half of an IEEE float32.
/// The BCL has no bfloat16, so this is the project's own. Conversion from float32 rounds to nearest, ties to even,
/// on the bit pattern (as PyTorch's <c>round_to_nearest_even</c> does); a NaN stays a NaN (quiet, sign kept).
/// Widening to float32 or double is exact.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>
{
    /// <summary>The raw 16 bits, as stored in a .safetensors BF16 array.</summary>
    public ushort RawBits { get; }

    private BFloat16(ushort bits) => RawBits = bits;

    /// <summary>Reinterprets 16 raw bits as a bfloat16 (no rounding).</summary>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Rounds a float32 to the nearest bfloat16, ties to even. NaN maps to a quiet NaN with the same sign.</summary>
    public static BFloat16 FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            // Keep the sign, force the quiet bit so that truncation cannot turn the NaN into an infinity.
            return new BFloat16((ushort)((bits >> 16) | 0x0040));
        }
        // Round to nearest even: add 0x7FFF plus the lowest kept bit, then truncate.
        uint lsb = (bits >> 16) & 1u;
        uint rounded = bits + 0x7FFFu + lsb;
        return new BFloat16((ushort)(rounded >> 16));
    }

    /// <summary>Rounds a double to bfloat16: first to float32 (nearest even), then to bfloat16 (nearest even).
    /// Double rounding can differ from a direct rounding only for values within 2^-24 relative of a bfloat16 tie;
    /// use <c>Precision.Round</c> for the correctly rounded value.</summary>
    public static BFloat16 FromDouble(double value) => FromSingle((float)value);

    /// <summary>Widens exactly to float32.</summary>
    public float ToSingle() => BitConverter.UInt32BitsToSingle((uint)RawBits << 16);

    /// <summary>Widens exactly to double.</summary>
    public double ToDouble() => ToSingle();

    /// <summary>Explicit narrowing from float32 (round to nearest even).</summary>
    public static explicit operator BFloat16(float value) => FromSingle(value);

    /// <summary>Exact widening to float32.</summary>
    public static explicit operator float(BFloat16 value) => value.ToSingle();

    /// <summary>Exact widening to double.</summary>
    public static explicit operator double(BFloat16 value) => value.ToDouble();

    /// <summary>True when the value is a NaN.</summary>
    public bool IsNaN => float.IsNaN(ToSingle());

    /// <inheritdoc />
    public bool Equals(BFloat16 other) => RawBits == other.RawBits;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => RawBits;

    /// <inheritdoc />
    public int CompareTo(BFloat16 other) => ToSingle().CompareTo(other.ToSingle());

    /// <summary>Bitwise equality (two NaNs with equal bits are equal, +0 and -0 are not).</summary>
    public static bool operator ==(BFloat16 left, BFloat16 right) => left.Equals(right);

    /// <summary>Bitwise inequality.</summary>
    public static bool operator !=(BFloat16 left, BFloat16 right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() => ToSingle().ToString("R", CultureInfo.InvariantCulture);
}
