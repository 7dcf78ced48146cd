namespace Reference.Attention;

/// <summary>
/// Pieces shared by the attention references: input validation, one score, and one row's softmax-weighted sum.
/// Dense and block-sparse attention both end in <see cref="SoftmaxRow"/>, visiting the allowed keys in ascending
/// order, which is why they agree bit for bit (proofs/attention.md, attention.block-sparse-equivalence).
/// </summary>
internal static class AttentionCore
{
    /// <summary>The sizes read off q [B,Hq,Tq,D], k [B,Hkv,Tk,D] and v [B,Hkv,Tk,Dv].</summary>
    internal readonly record struct Dims(int B, int Hq, int Hkv, int Tq, int Tk, int D, int Dv)
    {
        /// <summary>Query heads per kv head; query head h reads kv head h / Group.</summary>
        public int Group => Hq / Hkv;
    }

    /// <summary>The identity, the rounding hook of a full double-precision computation.</summary>
    internal static readonly Func<double, double> Exact = static x => x;

    /// <summary>Checks that q, k, v have matching shapes (GQA allowed) and finite entries.</summary>
    internal static Dims ValidateInputs(double[,,,] q, double[,,,] k, double[,,,] v)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        var d = new Dims(q.GetLength(0), q.GetLength(1), k.GetLength(1), q.GetLength(2), k.GetLength(2), q.GetLength(3), v.GetLength(3));
        if (d.D < 1)
            throw new ArgumentException("q has head dimension 0; D must be at least 1", nameof(q));
        if (k.GetLength(0) != d.B)
            throw new ArgumentException($"k has batch size {k.GetLength(0)} but q has {d.B}", nameof(k));
        if (k.GetLength(3) != d.D)
            throw new ArgumentException($"k has head dimension {k.GetLength(3)} but q has {d.D}", nameof(k));
        if (d.Hkv < 1 || d.Hq % d.Hkv != 0)
            throw new ArgumentException($"k has {d.Hkv} heads, which does not divide the {d.Hq} query heads of q", nameof(k));
        if (v.GetLength(0) != d.B || v.GetLength(1) != d.Hkv || v.GetLength(2) != d.Tk)
        {
            throw new ArgumentException(
                $"v has shape [{v.GetLength(0)}, {v.GetLength(1)}, {v.GetLength(2)}, {d.Dv}] but k implies [{d.B}, {d.Hkv}, {d.Tk}, Dv]", nameof(v));
        }

        RequireFinite(q, nameof(q));
        RequireFinite(k, nameof(k));
        RequireFinite(v, nameof(v));
        return d;
    }

    /// <summary>Rejects NaN and infinities, naming the first offending index.</summary>
    internal static void RequireFinite(double[,,,] x, string name)
    {
        for (int a = 0; a < x.GetLength(0); a++)
        {
            for (int b = 0; b < x.GetLength(1); b++)
            {
                for (int c = 0; c < x.GetLength(2); c++)
                {
                    for (int d = 0; d < x.GetLength(3); d++)
                    {
                        double value = x[a, b, c, d];
                        if (!double.IsFinite(value))
                            throw new ArgumentException($"{name}[{a}, {b}, {c}, {d}] is {Describe(value)}", name);
                    }
                }
            }
        }
    }

    /// <summary>"NaN", "+Infinity" or "-Infinity".</summary>
    internal static string Describe(double value) =>
        double.IsNaN(value) ? "NaN" : value > 0 ? "+Infinity" : "-Infinity";

    /// <summary>Checks the scale (finite) and the softcap (finite, &gt;= 0); returns the scale to use.</summary>
    internal static double ResolveScale(double? scale, double softcap, int headDim, string scaleName, string softcapName)
    {
        double s = scale ?? 1.0 / Math.Sqrt(headDim);
        if (!double.IsFinite(s))
            throw new ArgumentException($"scale is {Describe(s)}", scaleName);
        if (!double.IsFinite(softcap) || softcap < 0)
            throw new ArgumentException($"softcap must be finite and >= 0 (0 = none), got {softcap}", softcapName);
        return s;
    }

    /// <summary>Checks that a mask broadcasts to [B, H, Tq, Tk]: every dimension 1 or the full size.</summary>
    internal static void ValidateMask(bool[,,,]? mask, string name, int b, int h, int tq, int tk)
    {
        if (mask is null) return;
        int[] full = [b, h, tq, tk];
        for (int dim = 0; dim < 4; dim++)
        {
            int n = mask.GetLength(dim);
            if (n != 1 && n != full[dim])
            {
                throw new ArgumentException(
                    $"{name} has shape [{mask.GetLength(0)}, {mask.GetLength(1)}, {mask.GetLength(2)}, {mask.GetLength(3)}], " +
                    $"which does not broadcast to [{b}, {h}, {tq}, {tk}]: dimension {dim} is {n}, expected 1 or {full[dim]}", name);
            }
        }
    }

    /// <summary>mask[b, h, i, j] with broadcasting (a dimension of size 1 is read at index 0).</summary>
    internal static bool MaskAt(bool[,,,] mask, int b, int h, int i, int j) =>
        mask[mask.GetLength(0) == 1 ? 0 : b, mask.GetLength(1) == 1 ? 0 : h,
             mask.GetLength(2) == 1 ? 0 : i, mask.GetLength(3) == 1 ? 0 : j];

    /// <summary>
    /// One score s_ij = softcap(scale * sum_d q[b,h,i,d] k[b,kvh,j,d]), with <paramref name="round"/> applied after
    /// every product, sum, scaling, division and tanh. The dot product accumulates left to right over d.
    /// </summary>
    internal static double Score(double[,,,] q, double[,,,] k, int b, int h, int i, int kvh, int j,
                                 double scale, double softcap, Func<double, double> round)
    {
        int headDim = q.GetLength(3);
        double dot = 0.0;
        for (int d = 0; d < headDim; d++)
            dot = round(dot + round(q[b, h, i, d] * k[b, kvh, j, d]));
        double s = round(dot * scale);
        if (softcap > 0)
            s = round(softcap * round(Math.Tanh(round(s / softcap))));
        return s;
    }

    /// <summary>
    /// Finishes one query row from its allowed keys (ascending) and their scores:
    /// m = max s; p_n = exp(s_n - m); l = sum p_n; w_n = p_n / l; out[d] = sum_n w_n v[j_n, d]; lse = m + ln l.
    /// With no allowed key the row is left at 0 and lse is -Infinity. Every operation is followed by
    /// <paramref name="round"/>, in the order written (the order of torch's softmax followed by einsum).
    /// </summary>
    internal static void SoftmaxRow(List<int> keys, List<double> scores, double[,,,] v, int b, int kvh,
                                    double[,,,] output, double[,,] lse, int h, int i, Func<double, double> round)
    {
        int count = keys.Count;
        int valueDim = v.GetLength(3);
        if (count == 0)
        {
            // No allowed key: the softmax is 0/0. FlashAttention-3, FlexAttention and PyTorch SDPA return 0 and -Inf.
            for (int d = 0; d < valueDim; d++) output[b, h, i, d] = 0.0;
            lse[b, h, i] = double.NegativeInfinity;
            return;
        }

        // 1. m = max_n s_n (a comparison, exact in any precision).
        double m = double.NegativeInfinity;
        foreach (double s in scores) m = Math.Max(m, s);

        // 2. p_n = exp(s_n - m) <= 1, and l = sum_n p_n >= 1 (the maximal key contributes exp(0) = 1).
        var p = new double[count];
        double l = 0.0;
        for (int n = 0; n < count; n++)
        {
            p[n] = round(Math.Exp(round(scores[n] - m)));
            l = round(l + p[n]);
        }

        // 3. The probabilities w_n = p_n / l.
        var w = new double[count];
        for (int n = 0; n < count; n++) w[n] = round(p[n] / l);

        // 4. out[d] = sum_n w_n v[j_n, d], accumulated in ascending key order.
        for (int d = 0; d < valueDim; d++)
        {
            double acc = 0.0;
            for (int n = 0; n < count; n++)
                acc = round(acc + round(w[n] * v[b, kvh, keys[n], d]));
            output[b, h, i, d] = acc;
        }

        // 5. lse = m + ln l.
        lse[b, h, i] = round(m + round(Math.Log(l)));
    }
}
