using System.Buffers;
using System.Numerics.Tensors;
using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the SoftTopk kernel.</summary>
/// <param name="Y">[N * E], row-major [N, E]: the soft top-k indicator in float32.</param>
/// <param name="Jacobian">[N * E * E], row-major [N, E, E] with Jacobian[i, a, b] = dY[i, a]/dX[i, b]; null unless asked.</param>
public sealed record SoftTopKKernelResult(float[] Y, float[]? Jacobian);

/// <summary>
/// SoftTopk (proofs/softtopk.md, Definition), optimized: float32, SIMD through <see cref="TensorPrimitives"/> for the
/// sigmoids and sums, parallel over blocks of rows. It computes what <see cref="Reference.Routing.SoftTopK"/> computes,
/// up to float32 rounding.
/// </summary>
/// <remarks>
/// <para>Threshold operator: y_e = sigmoid((x_e - t)/tau) with sum y = k, J = (diag(q) - q q^T / sum q)/tau,
/// q_e = y_e (1 - y_e). The threshold is found in two stages: a float32 bisection gives c within a few units in the
/// last place of t; then Newton steps solve for the small offset delta = t - c using r_e = x_e - c, so that
/// s_e = (r_e - delta)/tau carries a relative error of a few float32 roundings of s_e itself, instead of the absolute
/// error u |t| / tau that a float32 t would leave (which grows without bound as tau shrinks against |x|).</para>
/// <para>Entropic operator: not a Sinkhorn solve but its closed form, theorem softtopk.entropic-is-threshold of
/// proofs/softtopk.md: y = threshold operator on xh = (x - min x)/(max x - min x) at temperature tau/2, and
/// J = J_threshold(xh, tau/2) times the Jacobian of the normalization (min and max at their lowest index, as in
/// the reference). A constant row gives y = k/E and J = 0.</para>
/// </remarks>
public static class SoftTopK
{
    /// <summary>Below this many scores the kernel runs on one thread.</summary>
    private const int ParallelThreshold = 1 << 14;

    /// <summary>Rows handled per parallel work item.</summary>
    private const int RowsPerBlock = 32;

    /// <summary>The float32 unit roundoff, 2^-24.</summary>
    private const float Unit = 5.96046448E-08f;

    /// <summary>Computes SoftTopk on N rows of E scores.</summary>
    /// <param name="x">Scores, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E, at least 2.</param>
    /// <param name="options">k (1..E-1), tau (narrowed to float32; it must stay a positive normal float), the method,
    /// and whether to compute the Jacobian.</param>
    /// <returns>y [N, E] and, when asked, the Jacobian [N, E, E], flat.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, k is outside 1..E-1, tau is not a positive normal float32,
    /// or a score is not finite.</exception>
    public static SoftTopKKernelResult Compute(float[] x, int tokens, int experts, SoftTopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(options);
        if (tokens < 0 || experts < 2 || (long)tokens * experts != x.LongLength)
        {
            throw new ArgumentException($"x has {x.Length} elements, not N * E = {tokens} * {experts} with E >= 2", nameof(x));
        }
        Guard.InRange(options.K, 1, experts - 1, "k");
        float tau = (float)options.Tau;
        if (!float.IsNormal(tau) || tau < 0f)
        {
            throw new ArgumentOutOfRangeException("tau", options.Tau, $"tau = {Guard.Describe(options.Tau)}; the float32 kernel needs a positive normal float32 tau");
        }
        for (int f = 0; f < x.Length; f++)
        {
            if (!float.IsFinite(x[f]))
            {
                throw new ArgumentException($"x[{f / experts}, {f % experts}] is {Guard.Describe(x[f])}; x must be finite", nameof(x));
            }
        }

        var result = new SoftTopKKernelResult(new float[x.Length], options.Jacobian ? new float[(long)x.Length * experts] : null);
        if ((long)tokens * experts < ParallelThreshold)
        {
            ComputeRows(x, 0, tokens, experts, options, tau, result);
        }
        else
        {
            int blocks = (tokens + RowsPerBlock - 1) / RowsPerBlock;
            Parallel.For(0, blocks, blk =>
            {
                int start = blk * RowsPerBlock;
                ComputeRows(x, start, Math.Min(tokens, start + RowsPerBlock), experts, options, tau, result);
            });
        }
        return result;
    }

    /// <summary>Rows [start, end): one scratch buffer per call.</summary>
    private static void ComputeRows(float[] x, int start, int end, int e, SoftTopKOptions options, float tau, SoftTopKKernelResult result)
    {
        int k = options.K;
        bool entropic = options.Method == SoftTopKMethod.Entropic;
        float[] scratch = ArrayPool<float>.Shared.Rent(3 * e);
        try
        {
            var scores = scratch.AsSpan(0, e);   // [E]: x, or xh for the entropic operator
            var q = scratch.AsSpan(e, e);        // [E]: y (1 - y)
            var work = scratch.AsSpan(2 * e, e); // [E]: temporaries of the solve
            for (int i = start; i < end; i++)
            {
                var row = x.AsSpan(i * e, e);
                var y = result.Y.AsSpan(i * e, e);
                var jacobian = result.Jacobian is null ? Span<float>.Empty : result.Jacobian.AsSpan(i * e * e, e * e);
                float temperature = tau;
                int argMin = 0, argMax = 0;
                float range = 0f, rangeScale = 1f;

                // 1. The scores the threshold operator sees: x itself, or its min-max normalization at tau/2.
                if (!entropic)
                {
                    row.CopyTo(scores);
                }
                else
                {
                    for (int j = 1; j < e; j++)
                    {
                        if (row[j] < row[argMin])
                        {
                            argMin = j;
                        }
                        if (row[j] > row[argMax])
                        {
                            argMax = j;
                        }
                    }
                    float min = row[argMin], max = row[argMax];
                    if (min == max)
                    {
                        y.Fill((float)((double)k / e)); // a constant row: y = k/E, J = 0
                        jacobian.Clear();
                        continue;
                    }
                    range = max - min;
                    if (float.IsInfinity(range))
                    {
                        // max - min overflows float32: normalize the halves (dxh/dx = 1/(2 * range) below).
                        range = 0.5f * max - 0.5f * min;
                        rangeScale = 0.5f;
                        TensorPrimitives.Multiply(row, 0.5f, scores);
                        TensorPrimitives.Subtract(scores, 0.5f * min, scores);
                    }
                    else
                    {
                        TensorPrimitives.Subtract(row, min, scores);
                    }
                    TensorPrimitives.Divide(scores, range, scores);
                    temperature = 0.5f * tau;
                }

                // 2. y and q from the threshold operator.
                float sumQ = Threshold(scores, k, temperature, y, q, work);

                // 3. The Jacobian: J = (diag(q) - q q^T / sum q)/temperature, chained with the normalization if entropic.
                if (jacobian.IsEmpty)
                {
                    continue;
                }
                jacobian.Clear();
                if (sumQ == 0f)
                {
                    continue; // every q underflowed: J = 0, its limit
                }
                // pi_c = q_c / sum q, and for the normalization the weighted sums sum_c pi_c (1 - xh_c), sum_c pi_c xh_c.
                TensorPrimitives.Divide(q, sumQ, work);
                float piX = entropic ? TensorPrimitives.Dot(work, scores) : 0f;
                float piOneMinusX = entropic ? 1f - piX : 0f;
                for (int a = 0; a < e; a++)
                {
                    var jRow = jacobian.Slice(a * e, e);
                    float qa = q[a] / temperature;
                    TensorPrimitives.Multiply(work, -qa, jRow);
                    jRow[a] += qa;
                    if (entropic)
                    {
                        // J_ab = (Yh_ab - [b = argmin] sum_c Yh_ac (1 - xh_c) - [b = argmax] sum_c Yh_ac xh_c) / R,
                        // with Yh = (diag(q) - q pi^T)/temperature, so sum_c Yh_ac v_c = qa (v_a - pi . v).
                        float towardMin = qa * ((1f - scores[a]) - piOneMinusX);
                        float towardMax = qa * (scores[a] - piX);
                        jRow[argMin] -= towardMin;
                        jRow[argMax] -= towardMax;
                        TensorPrimitives.Multiply(jRow, rangeScale / range, jRow);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// The threshold operator on one row: writes y and q = y (1 - y) and returns sum q. Stage 1 bisects for a float32
    /// c near t (invariant: the computed sum at lo is &gt;= k, at hi &lt;= k). Stage 2 takes r = x - c and solves
    /// sum sigmoid((r - delta)/tau) = k for the small delta by Newton steps kept inside [lo - c, hi - c].
    /// </summary>
    private static float Threshold(ReadOnlySpan<float> x, int k, float tau, Span<float> y, Span<float> q, Span<float> work)
    {
        int e = x.Length;
        float logit = (float)(Math.Log(k) - Math.Log(e - k));
        float min = TensorPrimitives.Min(x), max = TensorPrimitives.Max(x);

        // 1. The bracket, widened if rounding defeats a margin.
        float lo = min - tau * (logit + 1f), hi = max - tau * (logit - 1f);
        for (float widen = tau; Excess(x, lo, tau, k, work) < 0f; widen *= 2f)
        {
            lo -= widen;
        }
        for (float widen = tau; Excess(x, hi, tau, k, work) > 0f; widen *= 2f)
        {
            hi += widen;
        }
        if (!float.IsFinite(lo) || !float.IsFinite(hi))
        {
            throw new ArgumentException($"x and tau = {tau} put the threshold outside the float32 range", "x");
        }

        // 2. Stage 1: float32 bisection until hi - lo <= u max(|lo|, |hi|, tau) (or adjacent floats).
        while (hi - lo > Unit * MathF.Max(tau, MathF.Max(MathF.Abs(lo), MathF.Abs(hi))))
        {
            float mid = 0.5f * lo + 0.5f * hi;
            if (mid <= lo || mid >= hi)
            {
                break;
            }
            if (Excess(x, mid, tau, k, work) >= 0f)
            {
                lo = mid;
            }
            else
            {
                hi = mid;
            }
        }
        float c = 0.5f * lo + 0.5f * hi;

        // 3. Stage 2: r = x - c, then Newton on delta with s = (r - delta)/tau, delta kept in [lo - c, hi - c].
        var r = work;
        TensorPrimitives.Subtract(x, c, r);
        float delta = 0f, deltaLo = lo - c, deltaHi = hi - c;
        float sumQ = 0f;
        for (int step = 0; step < 4; step++)
        {
            float excess = SigmoidAndQ(r, delta, tau, y, q) - k;
            sumQ = TensorPrimitives.Sum(q);
            if (excess == 0f || sumQ == 0f)
            {
                break;
            }
            // d(sum y)/d(delta) = -sum q / tau.
            float next = Math.Clamp(delta + excess * tau / sumQ, deltaLo, deltaHi);
            if (next == delta)
            {
                break;
            }
            delta = next;
        }
        SigmoidAndQ(r, delta, tau, y, q);
        return TensorPrimitives.Sum(q);
    }

    /// <summary>sum_e sigmoid((x_e - t)/tau) - k, with the sigmoids in <paramref name="work"/>.</summary>
    private static float Excess(ReadOnlySpan<float> x, float t, float tau, int k, Span<float> work)
    {
        TensorPrimitives.Subtract(x, t, work);
        TensorPrimitives.Divide(work, tau, work);
        TensorPrimitives.Sigmoid(work, work);
        return TensorPrimitives.Sum(work) - k;
    }

    /// <summary>y = sigmoid(s) and q = sigmoid(s) sigmoid(-s) for s = (r - delta)/tau; returns sum y.</summary>
    private static float SigmoidAndQ(ReadOnlySpan<float> r, float delta, float tau, Span<float> y, Span<float> q)
    {
        TensorPrimitives.Subtract(r, delta, q);
        TensorPrimitives.Divide(q, tau, q);    // q = s
        TensorPrimitives.Sigmoid(q, y);        // y = sigmoid(s)
        TensorPrimitives.Negate(q, q);
        TensorPrimitives.Sigmoid(q, q);        // q = sigmoid(-s) = 1 - y, without the cancellation
        TensorPrimitives.Multiply(q, y, q);    // q = y (1 - y)
        return TensorPrimitives.Sum(y);
    }
}
