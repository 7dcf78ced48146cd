using Reference.Attention;
using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using static TorchSharp.torch;

namespace Reference.Torch.Attention;

/// <summary>
/// Dense attention (proofs/attention.md, Definition) as PyTorch users write it: the causal rule and the sliding window
/// as one boolean [Tq, Tk] mask built from <c>arange</c> positions (p_i = i + Tk - Tq bottom-right, i top-left),
/// intersected with the explicit mask, then <see cref="TorchAttention.Attend"/> (SDPA with that <c>attn_mask</c>, GQA by
/// <c>repeat_interleave</c>, lse by <c>logsumexp</c>, empty rows 0 and -Inf).
/// </summary>
/// <remarks>SDPA's own <c>is_causal</c> is top-left aligned (torch.tril), which is the Definition's only when
/// causal_align = top-left or Tq = Tk; the boolean mask covers both alignments and the windows the same way.</remarks>
public static class DenseAttentionTorch
{
    /// <summary>Dense attention of the call's q, k, v on its device.</summary>
    /// <param name="call">The bound call (q, k, v, optional mask).</param>
    /// <param name="options">Causal, alignment, windows, scale, softcap.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    public static AttentionOutput Run(AlgorithmCall call, AttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        TorchAttention.Validate(call, options.Scale, options.Softcap);
        if (options.WindowLeft < -1 || options.WindowRight < -1)
        {
            throw new ArgumentException($"window_left and window_right must be -1 or >= 0, got {options.WindowLeft} and {options.WindowRight}", nameof(options));
        }
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var q = TorchAttention.Floats(call, "q", device);
        var k = TorchAttention.Floats(call, "k", device);
        var v = TorchAttention.Floats(call, "v", device);
        var allowed = PositionMask(options, q.shape[2], k.shape[2], device);
        var mask = TorchAttention.OptionalBools(call, "mask", device);
        if (mask is not null) allowed = allowed is null ? mask : allowed.logical_and(mask);
        return TorchAttention.Attend(q, k, v, allowed, options.Scale, options.Softcap, TorchAttention.ComputeType(call));
    }

    /// <summary>The causal and window rules as a bool [Tq, Tk] mask, or null when neither is set.</summary>
    /// <param name="options">The options.</param>
    /// <param name="tq">Tq.</param>
    /// <param name="tk">Tk.</param>
    /// <param name="device">The device.</param>
    /// <returns>allowed[i, j], or null.</returns>
    internal static Tensor? PositionMask(AttentionOptions options, long tq, long tk, Device device)
    {
        if (!options.Causal && options.WindowLeft < 0 && options.WindowRight < 0) return null;
        long offset = options.CausalAlign == CausalAlignment.TopLeft ? 0 : tk - tq;
        var p = (arange(tq, ScalarType.Int64, device) + offset).unsqueeze(1);   // p_i [Tq, 1]
        var j = arange(tk, ScalarType.Int64, device).unsqueeze(0);              // j   [1, Tk]
        var allowed = ones([tq, tk], ScalarType.Bool, device);
        if (options.Causal) allowed = allowed.logical_and(j <= p);
        if (options.WindowLeft >= 0) allowed = allowed.logical_and(j >= p - options.WindowLeft);
        if (options.WindowRight >= 0) allowed = allowed.logical_and(j <= p + options.WindowRight);
        return allowed;
    }
}
