using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// SoftTopk (proofs/softtopk.md, Definition), both methods, as batched tensor code: the threshold t of
/// y = sigmoid((x - t)/tau) with sum_e y = k is found for all rows at once (a bisection on a per-row bracket, then
/// Newton steps on a small offset), in float32; the Jacobian is the closed form (diag(q) - q q^T / sum q)/tau.
/// </summary>
/// <remarks>
/// <para>Threshold operator: stage 1 bisects every row's bracket [lo, hi] (sum of sigmoids >= k at lo, &lt;= k at hi)
/// for a fixed number of halvings, enough to reach adjacent float32 numbers; stage 2 takes r = x - c at the bracket's
/// midpoint c and solves sum sigmoid((r - delta)/tau) = k for delta with four clamped Newton steps, so that the
/// argument (r - delta)/tau carries a relative error of a few roundings instead of the absolute error u |t| / tau a
/// float32 t would leave (the same two stages as the float32 kernel, proofs/softtopk.md). q = sigmoid(s) sigmoid(-s),
/// without the cancellation of y (1 - y).</para>
/// <para>Entropic operator: its closed form, theorem softtopk.entropic-is-threshold: the threshold operator on the
/// min-max normalized row xh = (x - min)/(max - min) at temperature tau/2; a constant row gives y = k/E and J = 0. The
/// Jacobian is chained with the normalization's (min and max at their lowest index, <c>argmin</c>/<c>argmax</c> of the
/// first occurrence, as the reference). This is Xie et al. 2020's entropic top-k without an iterative Sinkhorn solve,
/// which the two-anchor problem does not need.</para>
/// <para>Precision: float32 throughout, whatever the input format (the bisection needs float32's resolution: float16
/// or bfloat16 thresholds would leave an error of u |t| / tau in every sigmoid argument), as mixed-precision code keeps
/// such solvers in float32; y and the Jacobian are returned in x's dtype (<c>.to(dtype)</c>): float16 or bfloat16 for
/// float16 or bfloat16 x, else float32 (<see cref="TorchRouting"/>). Rows whose max - min overflows float32 are not
/// supported by the entropic method (<see cref="Supports"/>).</para>
/// </remarks>
public static class SoftTopKTorch
{
    /// <summary>Halvings of the bracket: from any float32 bracket to adjacent numbers takes fewer.</summary>
    private const int Bisections = 160;

    /// <summary>The calls this path computes: every call whose tau is a positive normal float32 and, for the entropic
    /// method, whose rows' ranges max - min stay finite in float32.</summary>
    /// <param name="call">The bound call.</param>
    /// <returns>True when the path supports it.</returns>
    public static bool Supports(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        var options = SoftTopKAlgorithm.Entry.Options(call);
        float tau = (float)options.Tau;
        if (!float.IsNormal(tau) || tau < 0f)
        {
            return false;
        }
        if (options.Method != SoftTopKMethod.Entropic)
        {
            return true;
        }
        var x = call.Floats("x");
        int e = call.Array("x").Shape[1];
        for (int i = 0; i * e < x.Length; i++)
        {
            var row = x.AsSpan(i * e, e);
            float min = float.PositiveInfinity, max = float.NegativeInfinity;
            foreach (float v in row)
            {
                (min, max) = (Math.Min(min, v), Math.Max(max, v));
            }
            if (float.IsInfinity(max - min))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Computes y (and the Jacobian when asked) for the call's x [N, E] on its device, in float32; returned in
    /// x's dtype.</summary>
    /// <param name="call">The bound call (x).</param>
    /// <param name="options">k, tau, the method, whether to compute the Jacobian.</param>
    /// <returns>y [N, E] and, when asked, the Jacobian [N, E, E].</returns>
    public static SoftTopKOutput Run(AlgorithmCall call, SoftTopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var shape = call.Array("x").Shape;
        int n = shape[0], e = shape[1], k = options.K;
        float tau = (float)options.Tau;
        var x = tensor(call.Floats("x"), [n, e], ScalarType.Float32, device);
        bool entropic = options.Method == SoftTopKMethod.Entropic;

        // 1. The scores the threshold operator sees: x, or its min-max normalization at tau/2.
        Tensor scores = x, range = ones(n, 1, ScalarType.Float32, device), argMin = x, argMax = x, constant = zeros(n, 1, ScalarType.Bool, device);
        float temperature = tau;
        if (entropic)
        {
            argMin = x.argmin(-1, keepdim: true);                                     // [N, 1], first occurrence
            argMax = x.argmax(-1, keepdim: true);
            var min = x.gather(-1, argMin);
            range = x.gather(-1, argMax) - min;                                       // [N, 1]
            constant = range.eq(0);
            scores = (x - min) / range.where(constant.logical_not(), 1.0f);
            temperature = 0.5f * tau;
        }

        // 2. y and q from the threshold operator; a constant row (entropic) gets k/E and q = 0.
        var (y, q) = Threshold(scores, k, temperature, e);
        if (entropic)
        {
            y = y.where(constant.logical_not(), (float)((double)k / e));
            q = q.where(constant.logical_not(), 0.0f);
        }
        var dtype = TorchRouting.ModelType(call, "x");
        var yOut = TorchRouting.Stored(y, dtype, n, e);
        if (!options.Jacobian)
        {
            return new SoftTopKOutput(yOut, null);
        }

        // 3. J = (diag(q) - q pi^T)/temperature with pi = q / sum q (0 where every q underflowed), chained with the
        //    normalization: J_ab -= [b = argmin] qa((1 - xh_a) - pi.(1 - xh)) + [b = argmax] qa(xh_a - pi.xh), then / R.
        var sumQ = q.sum(dim: -1, keepdim: true);
        var pi = (q / sumQ.where(sumQ.gt(0), 1.0f)).where(sumQ.gt(0), 0.0f);           // [N, E]
        var qa = q / temperature;                                                     // [N, E]
        var jacobian = diag_embed(qa) - qa.unsqueeze(2) * pi.unsqueeze(1);            // [N, E, E]
        if (entropic)
        {
            var piX = (pi * scores).sum(dim: -1, keepdim: true);                      // [N, 1]
            var towardMin = qa * ((1.0f - scores) - (1.0f - piX));                    // [N, E]
            var towardMax = qa * (scores - piX);
            var minColumn = nn.functional.one_hot(argMin.squeeze(-1), e).to(ScalarType.Float32).unsqueeze(1); // [N, 1, E]
            var maxColumn = nn.functional.one_hot(argMax.squeeze(-1), e).to(ScalarType.Float32).unsqueeze(1);
            jacobian = jacobian - towardMin.unsqueeze(2) * minColumn - towardMax.unsqueeze(2) * maxColumn;
            jacobian = (jacobian / range.where(constant.logical_not(), 1.0f).unsqueeze(2)).where(constant.logical_not().unsqueeze(2), 0.0f);
        }
        return new SoftTopKOutput(yOut, TorchRouting.Stored(jacobian, dtype, n, e, e));
    }

    /// <summary>The threshold operator on every row of s [N, E] at the temperature: y and q = y (1 - y).</summary>
    private static (Tensor Y, Tensor Q) Threshold(Tensor s, int k, float tau, int e)
    {
        float logit = (float)(Math.Log(k) - Math.Log(e - k));
        var min = s.amin([-1], keepdim: true);
        var max = s.amax([-1], keepdim: true);

        // 1. The bracket [lo, hi] per row, widened (doubling steps) where rounding defeats the margin.
        var lo = min - tau * (logit + 1f);
        var hi = max - tau * (logit - 1f);
        var widen = full_like(lo, tau);
        for (int step = 0; step < 64; step++)
        {
            var short_ = Excess(s, lo, tau, k).lt(0);
            if (!short_.any().item<bool>())
            {
                break;
            }
            lo = lo - widen.where(short_, 0.0f);
            widen = widen * 2f;
        }
        widen = full_like(hi, tau);
        for (int step = 0; step < 64; step++)
        {
            var over = Excess(s, hi, tau, k).gt(0);
            if (!over.any().item<bool>())
            {
                break;
            }
            hi = hi + widen.where(over, 0.0f);
            widen = widen * 2f;
        }

        // 2. Stage 1: bisection of every row at once; a row whose midpoint no longer moves stays put.
        for (int step = 0; step < Bisections; step++)
        {
            var mid = 0.5f * lo + 0.5f * hi;
            var up = Excess(s, mid, tau, k).ge(0);
            lo = mid.where(up, lo);
            hi = hi.where(up, mid);
        }
        var c = 0.5f * lo + 0.5f * hi;

        // 3. Stage 2: r = s - c, Newton on delta in [lo - c, hi - c]: d(sum y)/d(delta) = -sum q / tau.
        var r = s - c;
        var delta = zeros_like(c);
        var (deltaLo, deltaHi) = (lo - c, hi - c);
        for (int step = 0; step < 4; step++)
        {
            var (y, q) = SigmoidAndQ(r, delta, tau);
            var excess = y.sum(dim: -1, keepdim: true) - k;
            var sumQ = q.sum(dim: -1, keepdim: true);
            var move = sumQ.gt(0).logical_and(excess.ne(0));
            var next = (delta + excess * tau / sumQ.where(move, 1.0f)).clamp(deltaLo, deltaHi);
            delta = next.where(move, delta);
        }
        return SigmoidAndQ(r, delta, tau);
    }

    /// <summary>sum_e sigmoid((s_e - t)/tau) - k per row, [N, 1].</summary>
    private static Tensor Excess(Tensor s, Tensor t, float tau, int k) => ((s - t) / tau).sigmoid().sum(dim: -1, keepdim: true) - k;

    /// <summary>y = sigmoid(z) and q = sigmoid(z) sigmoid(-z) for z = (r - delta)/tau.</summary>
    private static (Tensor Y, Tensor Q) SigmoidAndQ(Tensor r, Tensor delta, float tau)
    {
        var z = (r - delta) / tau;
        var y = z.sigmoid();
        return (y, y * z.neg().sigmoid());
    }
}
