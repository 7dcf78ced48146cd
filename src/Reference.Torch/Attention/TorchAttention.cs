using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Reference.Torch.Attention;

/// <summary>
/// Softmax attention under a boolean mask, as PyTorch users write it, shared by the torch paths of <c>attention</c>,
/// <c>block-sparse</c> and <c>moba</c>: GQA by <c>repeat_interleave</c> of the kv heads, out from
/// <c>scaled_dot_product_attention</c> with the boolean mask as <c>attn_mask</c>, lse from <c>torch.logsumexp</c> of the
/// masked float32 scores, and rows without an allowed key set to out = 0 (SDPA leaves NaN there) and lse = -Inf.
/// </summary>
/// <remarks>
/// <para>TorchSharp's <c>scaled_dot_product_attention</c> (0.107) takes no <c>scale</c>: SDPA applies 1/sqrt(D) itself.
/// A scale s is passed by multiplying q by c = s sqrt(D) when c is 1, 0 or a power of two, which is exact. Any other
/// scale, and a softcap (which SDPA cannot express: FlexAttention's <c>score_mod</c> is not in TorchSharp), go through
/// the eager form of Hugging Face's Gemma 2 attention and of SDPA's own math backend: scores = q k^T * s in float32,
/// softcap c tanh(s / c), masked_fill(-inf), softmax in float32, weights cast to the compute precision, then weights @ v.
/// Rounding q * c would add an error of u |q| to each element, which the calibrated baseline (computed from the exact
/// q) need not absorb on small exact cases, so it is not done.</para>
/// <para>Precision: when q, k and v are all float16 or all bfloat16 arrays, out is computed in that dtype (SDPA in half
/// precision, or the eager weights rounded to it) and is judged in it; otherwise in float32. lse is always computed in
/// float32 from the exactly widened inputs, as FlashAttention returns its <c>softmax_lse</c> in float32.</para>
/// </remarks>
internal static class TorchAttention
{
    /// <summary>The dtype out is computed in: float16 or bfloat16 when q, k and v all have that dtype, else float32.</summary>
    /// <param name="call">The call (q, k, v).</param>
    /// <returns>The scalar type.</returns>
    internal static ScalarType ComputeType(AlgorithmCall call)
    {
        DType q = call.Array("q").DType, k = call.Array("k").DType, v = call.Array("v").DType;
        if (q == k && k == v && q == DType.F16) return ScalarType.Float16;
        if (q == k && k == v && q == DType.BF16) return ScalarType.BFloat16;
        return ScalarType.Float32;
    }

    /// <summary>A float input as a float32 tensor on the device: exact for float16, bfloat16 and float32, rounded for
    /// float64.</summary>
    /// <param name="call">The call.</param>
    /// <param name="name">The input's name.</param>
    /// <param name="device">The device.</param>
    /// <returns>The tensor, of the input's shape.</returns>
    internal static Tensor Floats(AlgorithmCall call, string name, Device device) =>
        tensor(call.Floats(name), Dims(call.Array(name).Shape), ScalarType.Float32, device);

    /// <summary>A float input as a float64 tensor on the device (exact).</summary>
    /// <param name="call">The call.</param>
    /// <param name="name">The input's name.</param>
    /// <param name="device">The device.</param>
    /// <returns>The tensor, of the input's shape.</returns>
    internal static Tensor Doubles(AlgorithmCall call, string name, Device device) =>
        tensor(call.Doubles(name), Dims(call.Array(name).Shape), ScalarType.Float64, device);

    /// <summary>An optional bool input (b1, or u1 holding 0/1) as a bool tensor, or null when absent.</summary>
    /// <param name="call">The call.</param>
    /// <param name="name">The input's name.</param>
    /// <param name="device">The device.</param>
    /// <returns>The tensor, of the input's shape, or null.</returns>
    internal static Tensor? OptionalBools(AlgorithmCall call, string name, Device device)
    {
        if (!call.Has(name)) return null;
        var values = call.Doubles(name);
        var flags = new bool[values.Length];
        for (int n = 0; n < flags.Length; n++) flags[n] = values[n] != 0.0;
        return tensor(flags, Dims(call.Array(name).Shape), ScalarType.Bool, device);
    }

    /// <summary>An integer input (i32, or i64 within the int32 range) as an int64 tensor.</summary>
    /// <param name="call">The call.</param>
    /// <param name="name">The input's name.</param>
    /// <param name="device">The device.</param>
    /// <returns>The tensor, of the input's shape.</returns>
    internal static Tensor Integers(AlgorithmCall call, string name, Device device)
    {
        var values = call.Doubles(name);
        var longs = new long[values.Length];
        for (int n = 0; n < longs.Length; n++) longs[n] = (long)values[n];
        return tensor(longs, Dims(call.Array(name).Shape), ScalarType.Int64, device);
    }

    /// <summary>Checks what the call's binding does not: Hkv divides Hq, the mask broadcasts to [B, Hq, Tq, Tk], and
    /// the scale and softcap are usable.</summary>
    /// <param name="call">The call (q, k, optional mask).</param>
    /// <param name="scale">The scale parameter, or null.</param>
    /// <param name="softcap">The softcap parameter.</param>
    /// <exception cref="ArgumentException">One of them is not.</exception>
    internal static void Validate(AlgorithmCall call, double? scale, double softcap)
    {
        var q = call.Array("q").Shape;
        var k = call.Array("k").Shape;
        if (k[1] < 1 || q[1] % k[1] != 0)
        {
            throw new ArgumentException($"k has {k[1]} heads, which does not divide q's {q[1]} heads", "k");
        }
        if (call.Has("mask"))
        {
            var m = call.Array("mask").Shape;
            int[] full = [q[0], q[1], q[2], k[2]];
            for (int d = 0; d < 4; d++)
            {
                if (m[d] != 1 && m[d] != full[d])
                {
                    throw new ArgumentException(
                        $"mask has shape [{string.Join(", ", m)}], which does not broadcast to [{string.Join(", ", full)}]", "mask");
                }
            }
        }
        if (scale is double s && !double.IsFinite(s)) throw new ArgumentException($"scale must be finite, got {s}", "scale");
        if (!(softcap >= 0.0) || !double.IsFinite(softcap))
        {
            throw new ArgumentException($"softcap must be finite and >= 0, got {softcap}", "softcap");
        }
    }

    /// <summary>
    /// Attention of q over the keys <paramref name="allowed"/> lets through (class summary).
    /// </summary>
    /// <param name="q">Queries [B, Hq, Tq, D], float32.</param>
    /// <param name="k">Keys [B, Hkv, Tk, D], float32; Hkv divides Hq.</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv], float32.</param>
    /// <param name="allowed">A bool mask broadcastable to [B, Hq, Tq, Tk] (true = allowed), or null for all keys.</param>
    /// <param name="scale">The scale, or null for 1/sqrt(D).</param>
    /// <param name="softcap">The softcap c (0 = none).</param>
    /// <param name="dtype">The precision out is computed in (<see cref="ComputeType"/>).</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq] as float32 arrays (out holding values of <paramref name="dtype"/>).</returns>
    internal static AttentionOutput Attend(Tensor q, Tensor k, Tensor v, Tensor? allowed, double? scale, double softcap, ScalarType dtype)
    {
        long b = q.shape[0], hq = q.shape[1], tq = q.shape[2], d = q.shape[3];
        long hkv = k.shape[1], tk = k.shape[2], dv = v.shape[3];
        var device = q.device;
        if (tk == 0 || b == 0 || hq == 0 || tq == 0 || dv == 0)
        {
            // No key (every row empty) or nothing to compute: out 0, lse -Inf.
            return Result(zeros([b, hq, tq, dv], ScalarType.Float32, device), full([b, hq, tq], double.NegativeInfinity, ScalarType.Float32, device));
        }

        // 1. GQA: query head h reads kv head h / (Hq / Hkv), i.e. each kv head repeated Hq / Hkv times in place.
        if (hkv != hq)
        {
            k = k.repeat_interleave(hq / hkv, dim: 1);
            v = v.repeat_interleave(hq / hkv, dim: 1);
        }
        double s = scale ?? 1.0 / Math.Sqrt(d);

        // 2. lse = logsumexp of the masked float32 scores.
        var scores = q.matmul(k.transpose(-2, -1)) * s;
        if (softcap > 0.0) scores = (scores / softcap).tanh() * softcap;
        var masked = allowed is null ? scores : scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        var lse = masked.logsumexp(-1);

        // 3. out: SDPA when the scale can be given to it exactly, else the eager form.
        double factor = scale is null ? 1.0 : s * Math.Sqrt(d);
        Tensor output;
        if (softcap == 0.0 && (factor == 0.0 || double.IsPow2(Math.Abs(factor))))
        {
            var qs = factor == 1.0 ? q : q * factor;
            output = nn.functional.scaled_dot_product_attention(qs.to(dtype), k.to(dtype), v.to(dtype), allowed);
        }
        else
        {
            output = masked.softmax(-1).to(dtype).matmul(v.to(dtype));
        }

        // 4. Empty rows: out 0 (SDPA and softmax give NaN there); lse is already -Inf.
        if (allowed is not null)
        {
            output = output.masked_fill(allowed.any(-1, keepdim: true).logical_not(), 0.0);
        }
        return Result(output, lse);
    }

    /// <summary>A shape as torch dimensions.</summary>
    /// <param name="shape">The shape.</param>
    /// <returns>The dimensions.</returns>
    internal static long[] Dims(IReadOnlyList<int> shape) => shape.Select(x => (long)x).ToArray();

    /// <summary>A tensor's values as a float32 array of its shape (exact for float16 and bfloat16 tensors).</summary>
    /// <param name="x">The tensor.</param>
    /// <returns>The array.</returns>
    internal static NdArray ToArray(Tensor x)
    {
        var shape = x.shape.Select(n => checked((int)n)).ToArray();
        return NdArray.Create(x.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray(), shape);
    }

    private static AttentionOutput Result(Tensor output, Tensor lse) => new(ToArray(output), ToArray(lse));
}
