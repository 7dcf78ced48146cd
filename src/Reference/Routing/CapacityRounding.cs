using System.Numerics;

namespace Reference.Routing;

/// <summary>How an expert capacity C is derived from a capacity factor cf (proofs/capacity.md, Definition: Capacity rule), with
/// x = cf·N·k / E computed exactly (see <see cref="ExpertCapacity"/>):</summary>
public enum CapacityRounding
{
    /// <summary>C = ceil(x): Megatron-LM and DeepSpeed, the default.</summary>
    Ceil,
    /// <summary>C = floor(x): mesh-tensorflow.</summary>
    Floor,
    /// <summary>C = round-half-to-even(x): flaxformer.</summary>
    Round,
    /// <summary>C = k·floor(cf·ceil(N / E)): Tutel's rule, which rounds the per-choice capacity and then multiplies by k.</summary>
    Tutel,
    /// <summary>C = ceil(fl32(fl32(N / E) · fl32(cf·k))): DeepSpeed's <c>sharded_moe._capacity</c> exactly as it runs, with
    /// <c>torch.ceil((num_tokens / num_experts) * capacity_factor)</c>, N / E a Python (double) quotient, and the capacity
    /// factor tensor <c>torch.tensor(cf * k)</c> float32 (cf·k is a double product first). Differs from <see cref="Ceil"/>
    /// by one where the float32 rounding crosses an integer, e.g. N = 30, E = 3, cf = 0.1: 1 here, 2 exactly.</summary>
    CeilF32,
}

/// <summary>
/// The expert capacity C of proofs/capacity.md, Definition: Capacity rule: an explicit value, or a capacity factor with a rounding rule,
/// then at least <c>min_capacity</c>.
/// </summary>
/// <remarks>
/// <para>An explicit capacity is used as given (the minimum applies to the factor rule only: a caller who names C means C).</para>
/// <para>The rounding is applied to the exact rational value of cf·N·k / E, where cf is the exact binary value of the double
/// (no intermediate rounding), so the result does not depend on the order of operations. Megatron-LM and DeepSpeed compute
/// the product in floating point, and can differ by one when the product lies within a rounding error of an integer
/// (or, for round, of a half-integer); proofs/capacity.md, theorem capacity.capacity-rule. <see cref="CapacityRounding.CeilF32"/>
/// reproduces DeepSpeed's float32 computation instead, bit for bit (theorem capacity.ceil-f32-is-deepspeed).</para>
/// Sources: Megatron-LM <c>moe_utils.get_capacity</c>; DeepSpeed <c>sharded_moe._capacity</c>; mesh-tensorflow
/// <c>moe.py</c>; flaxformer <c>routing.py</c>; Tutel <c>fast_dispatch</c> capacity computation.
/// </remarks>
public static class ExpertCapacity
{
    /// <summary>C from a capacity factor: the rounding rule applied to (N·k / E)·cf, then max(C, minCapacity).</summary>
    /// <param name="tokens">N, at least 0.</param>
    /// <param name="experts">E, at least 1.</param>
    /// <param name="k">Experts per token, at least 1.</param>
    /// <param name="capacityFactor">cf, finite and at least 0.</param>
    /// <param name="rounding">The rounding rule.</param>
    /// <param name="minCapacity">The smallest capacity, at least 0.</param>
    /// <returns>C, at least 0.</returns>
    /// <exception cref="ArgumentException">cf is negative or not finite, minCapacity is negative, or C exceeds int.MaxValue.</exception>
    public static int FromFactor(int tokens, int experts, int k, double capacityFactor, CapacityRounding rounding, int minCapacity)
    {
        Guard.InRange(tokens, 0, int.MaxValue, "tokens");
        Guard.InRange(experts, 1, int.MaxValue, "experts");
        Guard.InRange(k, 1, int.MaxValue, "k");
        Guard.InRange(minCapacity, 0, int.MaxValue, "min_capacity");
        if (!double.IsFinite(capacityFactor) || capacityFactor < 0)
        {
            throw new ArgumentException(
                $"capacity_factor = {Guard.Describe(capacityFactor)}; it must be finite and at least 0", "capacity_factor");
        }

        if (rounding == CapacityRounding.CeilF32)
        {
            return Math.Max(DeepSpeedFloat32(tokens, experts, k, capacityFactor), minCapacity);
        }

        // cf = m·2^p exactly; x = cf·N·k / E = num / den with integers num, den > 0.
        var (num, den) = Rational(capacityFactor);
        if (rounding == CapacityRounding.Tutel)
        {
            // Tutel: k·floor(cf·ceil(N / E)), with ceil(N / E) an exact integer.
            num *= ((long)tokens + experts - 1) / experts;
        }
        else
        {
            num *= (long)tokens * k;
            den *= experts;
        }
        var floor = BigInteger.Divide(num, den);
        var twiceRemainder = 2 * (num - floor * den);
        var c = rounding switch
        {
            CapacityRounding.Ceil => twiceRemainder > 0 ? floor + 1 : floor,
            CapacityRounding.Floor => floor,
            CapacityRounding.Round => twiceRemainder > den || (twiceRemainder == den && !floor.IsEven) ? floor + 1 : floor,
            CapacityRounding.Tutel => floor * k,
            _ => throw new ArgumentOutOfRangeException(nameof(rounding), rounding, "unknown capacity rounding"),
        };
        if (c > int.MaxValue)
        {
            throw new ArgumentException($"capacity_factor = {capacityFactor} gives a capacity above {int.MaxValue}", "capacity_factor");
        }
        return Math.Max((int)c, minCapacity);
    }

    /// <summary>
    /// DeepSpeed's float32 capacity: ceil(fl32(fl32(N / E) · fl32(cf·k))). The steps are those torch takes for
    /// <c>torch.ceil((num_tokens / num_experts) * torch.tensor(capacity_factor * k))</c>: the Python quotient N / E is a
    /// double, rounded once more to float32 when it multiplies the float32 tensor (a Python scalar does not promote a
    /// float tensor); cf·k is a double product rounded to float32 by <c>torch.tensor</c>; the product is float32.
    /// </summary>
    private static int DeepSpeedFloat32(int tokens, int experts, int k, double capacityFactor)
    {
        float perExpert = (float)((double)tokens / experts);
        float factor = (float)(capacityFactor * k);
        float product = perExpert * factor;
        double c = Math.Ceiling((double)product);
        if (!(c <= int.MaxValue))
        {
            throw new ArgumentException($"capacity_factor = {capacityFactor} gives a capacity above {int.MaxValue}", "capacity_factor");
        }
        return (int)c;
    }

    /// <summary>A finite double x &gt;= 0 as an exact fraction num / den with den a power of two.</summary>
    private static (BigInteger Num, BigInteger Den) Rational(double x)
    {
        long bits = BitConverter.DoubleToInt64Bits(x);
        int exponent = (int)((bits >> 52) & 0x7FF);
        long mantissa = bits & 0xFFFFFFFFFFFFFL;
        if (exponent == 0)
        {
            exponent = 1; // subnormal (or zero): no implicit leading bit
        }
        else
        {
            mantissa |= 1L << 52;
        }
        int shift = exponent - 1075; // x = mantissa·2^shift
        return shift >= 0 ? (new BigInteger(mantissa) << shift, BigInteger.One) : (new BigInteger(mantissa), BigInteger.One << -shift);
    }

    /// <summary>C from an explicit capacity when one is given, otherwise from the factor rule.</summary>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="k">Experts per token.</param>
    /// <param name="capacity">An explicit C (at least 0), or null.</param>
    /// <param name="capacityFactor">cf, used when <paramref name="capacity"/> is null.</param>
    /// <param name="rounding">The rounding rule for the factor.</param>
    /// <param name="minCapacity">The smallest capacity from the factor rule.</param>
    /// <returns>C.</returns>
    /// <exception cref="ArgumentException">The explicit capacity is negative, or the factor rule rejects its arguments.</exception>
    public static int Resolve(int tokens, int experts, int k, int? capacity, double capacityFactor, CapacityRounding rounding, int minCapacity)
    {
        if (capacity is { } explicitCapacity)
        {
            Guard.InRange(explicitCapacity, 0, int.MaxValue, "capacity");
            Guard.InRange(minCapacity, 0, int.MaxValue, "min_capacity");
            return explicitCapacity;
        }
        return FromFactor(tokens, experts, k, capacityFactor, rounding, minCapacity);
    }
}
