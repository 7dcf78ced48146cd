using Reference.Attention;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;
using Reference.Numerics;
using KernelLinear = Reference.Kernels.Attention.LinearAttention;
using ReferenceLinear = Reference.Attention.LinearAttention;

namespace Reference.Harness.Algorithms;

/// <summary>The output of <c>linear</c>, from any path.</summary>
/// <param name="Out">[B, H, T, Dv] o_t.</param>
public sealed record LinearOutput(NdArray Out);

/// <summary>The registry entry for <c>linear</c>: causal linear attention (proofs/attention-sparse.md, Definition: Linear attention).</summary>
/// <remarks>
/// Path <c>kernel</c>: the chunked float32 kernel. <c>out</c> of a float32, float16 or bfloat16 candidate is judged by
/// the calibrated baseline rule (<see cref="CompareToBaseline"/>, proofs/attention-sparse.md, attention.linear-baseline);
/// a float64 candidate by the derived bound of <see cref="LinearErrorBound"/> (attention.linear-kernel).
/// </remarks>
public static class LinearAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<LinearAttentionOptions, LinearOutput> Entry { get; } = new()
    {
        Name = "linear",
        Summary = "causal linear attention: feature map, optional normalization and decay; parallel, recurrent or chunked form",
        Section = "proofs/attention-sparse.md, Definition: Linear attention",
        Seed = _ => new LinearAttentionOptions(),
        Parameters =
        [
            Param<LinearAttentionOptions>.Choice("feature_map", "elu1", "phi: elu(x)+1 or the identity",
                [("elu1", FeatureMap.Elu1), ("identity", FeatureMap.Identity)], (o, v) => o with { FeatureMap = v }),
            Param<LinearAttentionOptions>.Bool("normalize", "true", "divide by phi(q_t).z_t", (o, v) => o with { Normalize = v }),
            Param<LinearAttentionOptions>.Double("decay", "1.0", "gamma in (0, 1]", (o, v) => o with { Decay = v }),
            Param<LinearAttentionOptions>.Choice("form", "parallel", "evaluation order of the reference",
                [("parallel", LinearForm.Parallel), ("recurrent", LinearForm.Recurrent), ("chunked", LinearForm.Chunked)], (o, v) => o with { Form = v }),
            Param<LinearAttentionOptions>.Int("chunk", "64", "chunk length of the chunked form and of the kernel, >= 1", (o, v) => o with { Chunk = v }),
        ],
        Inputs =
        [
            new InputSpec("q", "B,H,T,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,H,T,D", ArrayKind.Float, false, "keys"),
            new InputSpec("v", "B,H,T,Dv", ArrayKind.Float, false, "values"),
        ],
        Outputs =
        [
            OutputSpec<LinearOutput>.Of("out", "B,H,T,Dv", ArrayKind.Float, OutputComparison.Tolerance, "o_t = phi(q_t)^T S_t (/ phi(q_t)^T z_t)", r => r.Out),
        ],
        Reference = (call, options) => new LinearOutput(AttentionArrays.ToArray(ReferenceLinear.Compute(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options))),
        // Beyond FastReference.AttentionWork (B H T^2 (D + Dv)): LinearAttentionFast, equal to the reference bit for bit
        // (proofs/attention-sparse.md, attention.linear-fast-reference-identical).
        Oracle = (call, options) => new LinearOutput(AttentionArrays.ToArray((AttentionAlgorithm.Fast(call)
            ? (Func<double[,,,], double[,,,], double[,,,], LinearAttentionOptions, double[,,,]>)LinearAttentionFast.Compute
            : ReferenceLinear.Compute)(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options))),
        Paths =
        [
            new PathOf<LinearAttentionOptions, LinearOutput>("kernel", "float32 chunked form (state carried across chunks), TensorPrimitives, parallel over (b, h)", (call, options) =>
            {
                NdArray q = call.Array("q"), v = call.Array("v");
                var shape = new LinearAttentionShape(q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3], v.Shape[3]);
                var output = KernelLinear.Chunked(call.Floats("q"), call.Floats("k"), call.Floats("v"), shape, options);
                return new LinearOutput(NdArray.Create(output, shape.Batch, shape.Heads, shape.Length, shape.ValueDim));
            }),
        ],
        CompareInContext = new LinearValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The factor of the baseline rule for float32 candidates of <c>linear</c> (measured: proofs/attention-sparse.md,
    /// attention.linear-baseline).</summary>
    public const double Factor32 = 5.0;

    /// <summary>The factor of the baseline rule for float16 and bfloat16 candidates of <c>linear</c> (measured, as
    /// <see cref="Factor32"/>).</summary>
    public const double FactorLow = 2.0;

    /// <summary>The rounding floor's multiple of u_f32 times the magnitude of <see cref="LinearBaseline.Compute"/>: the
    /// few final float32 roundings of a correct computation (the last sums, the division) that a naive order may by
    /// chance not make.</summary>
    public const double RoundingFloorUlps = 4.0;

    /// <summary>
    /// Judges <c>out</c> of a float32, float16 or bfloat16 candidate by the calibrated baseline rule:
    /// max |cand - ref64| &lt;= factor * base_error + floor + rounding_floor, with base_error the larger error of the two
    /// orders of <see cref="LinearBaseline"/> in <paramref name="format"/>, floor twice the representation error of
    /// ref64 in the format (<see cref="BaselinePolicy.Floor"/>), rounding_floor <see cref="RoundingFloorUlps"/> u_f32
    /// times the baseline's magnitude, and factor <see cref="Factor32"/> or <see cref="FactorLow"/>.
    /// </summary>
    /// <param name="q">Queries [B, H, T, D] as given.</param>
    /// <param name="k">Keys [B, H, T, D] as given.</param>
    /// <param name="v">Values [B, H, T, Dv] as given.</param>
    /// <param name="options">Feature map, normalization, decay.</param>
    /// <param name="format">The candidate's precision of out (not Float64).</param>
    /// <param name="candidate">The candidate's out, flat.</param>
    /// <param name="expected">The float64 reference, flat.</param>
    /// <param name="shape">The shape of out.</param>
    /// <returns>The report; its Detail names the baseline, factor, base_error, floor, rounding_floor and bound.</returns>
    public static ComparisonReport CompareToBaseline(double[,,,] q, double[,,,] k, double[,,,] v, LinearAttentionOptions options,
                                                     NumberFormat format, double[] candidate, double[] expected, IReadOnlyList<int> shape)
    {
        ArgumentNullException.ThrowIfNull(expected);
        var (parallel, magnitude) = LinearBaseline.Compute(q, k, v, options, format, 0);
        var (recurrent, _) = LinearBaseline.Compute(q, k, v, options, format, 1);
        bool low = format is NumberFormat.Float16 or NumberFormat.BFloat16;
        double factor = low ? FactorLow : Factor32;
        var policy = new BaselinePolicy(format, factor);
        double baseError = Math.Max(BaselinePolicy.BaseError(expected, parallel), BaselinePolicy.BaseError(expected, recurrent));
        double floor = policy.Floor(expected);
        double rounding = RoundingFloorUlps * Precision.UnitRoundoff(NumberFormat.Float32) * magnitude;
        if (!double.IsFinite(rounding)) rounding = 0.0;
        double bound = factor * baseError + floor + rounding;
        string detail = $"baseline={AttentionBaseline.Kind(format)} orders=2 (parallel, recurrent) factor={ComparisonReport.Number(factor)} "
                        + $"base_error={ComparisonReport.Number(baseError)} floor={ComparisonReport.Number(floor)} "
                        + $"rounding_floor={ComparisonReport.Number(rounding)} bound={ComparisonReport.Number(bound)}";
        return Elementwise.Compare("out", policy.Name, candidate, expected, shape,
            (_, c, r) => Math.Abs(c - r) > bound, detail, (_, _) => bound);
    }

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static LinearAttentionOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>A random case: awkward lengths and chunks, decay 1 or below, elu1 (normalized or not) or identity (unnormalized).</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int b = 1 + rng.Next(2), h = 1 + rng.Next(2), t = new[] { 1, 2, 7, 16, 33, 50 }[rng.Next(6)];
        int d = new[] { 1, 2, 4, 8 }[rng.Next(4)], dv = new[] { 1, 3, 8 }[rng.Next(3)];
        bool identity = rng.Next(3) == 0;
        double Draw() => rng.NextDouble() * 4.0 - 2.0;
        var inputs = new Dictionary<string, NdArray>
        {
            ["q"] = AttentionCases.RandomArray(Draw, DType.F32, b, h, t, d),
            ["k"] = AttentionCases.RandomArray(Draw, DType.F32, b, h, t, d),
            ["v"] = AttentionCases.RandomArray(Draw, DType.F32, b, h, t, dv),
        };
        var parameters = new Dictionary<string, string>
        {
            ["feature_map"] = identity ? "identity" : "elu1",
            ["normalize"] = identity || rng.Next(3) == 0 ? "false" : "true",
            ["decay"] = new[] { "1.0", "0.9", "0.5" }[rng.Next(3)],
            ["form"] = new[] { "parallel", "recurrent", "chunked" }[rng.Next(3)],
            ["chunk"] = AttentionCases.Text(new[] { 1, 3, 8, 64 }[rng.Next(4)]),
        };
        return new GeneratedCase(
            $"seed {seed}: B={b} H={h} T={t} D={d} Dv={dv} " + string.Join(" ", parameters.Select(p => $"{p.Key}={p.Value}")),
            inputs, parameters);
    }
}

/// <summary>
/// A forward error bound for linear attention computed in a given format by any of its three forms (or the chunked
/// kernel), from the inputs' magnitudes (proofs/attention-sparse.md, attention.linear-kernel).
/// </summary>
public static class LinearErrorBound
{
    /// <summary>
    /// max over (b, h, t, e) of the bound on |computed - exact|:
    /// <code>
    /// P_tj  = sum_d |phi(q_td) phi(k_jd)|,   N_te = sum_{j&lt;=t} gamma^(t-j) P_tj |v_je|,   M_t = sum_{j&lt;=t} gamma^(t-j) P_tj
    /// m     = 2T + D + 16  [+ 2 max(1, max|q|, max|k|) + 1 when the inputs are not representable in the format]
    /// g     = m u / (1 - m u)
    /// unnormalized: g N_te;   normalized: g (N_te + (N_te / |den_t|) M_t) / (|den_t| - g M_t) + u N_te / |den_t|
    /// </code>
    /// with den_t the exact denominator (evaluated in double); a normalized row with |den_t| &lt;= g M_t makes the bound
    /// +Infinity (vacuous).
    /// </summary>
    /// <param name="q">Queries [B, H, T, D].</param>
    /// <param name="k">Keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="options">Feature map, normalization, decay.</param>
    /// <param name="format">The precision of the computation.</param>
    /// <returns>The bound.</returns>
    public static double Bound(double[,,,] q, double[,,,] k, double[,,,] v, LinearAttentionOptions options, NumberFormat format)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(options);
        int bsz = q.GetLength(0), heads = q.GetLength(1), t = q.GetLength(2), d = q.GetLength(3), dv = v.GetLength(3);
        double u = Precision.UnitRoundoff(format);
        bool rounded = !Representable(q, format) || !Representable(k, format) || !Representable(v, format);
        double inputMax = 1.0;
        foreach (double x in q) inputMax = Math.Max(inputMax, Math.Abs(x));
        foreach (double x in k) inputMax = Math.Max(inputMax, Math.Abs(x));
        double m = 2.0 * t + d + 16.0 + (rounded ? 2.0 * inputMax + 1.0 : 0.0);
        if (!(m * u < 1.0)) return double.PositiveInfinity;
        double g = m * u / (1.0 - m * u);

        var fq = ReferenceLinear.Features(q, options.FeatureMap);
        var fk = ReferenceLinear.Features(k, options.FeatureMap);
        double worst = 0.0;
        var n = new double[dv];
        for (int b = 0; b < bsz; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int i = 0; i < t; i++)
                {
                    Array.Clear(n);
                    double mAbs = 0.0, den = 0.0;
                    for (int j = 0; j <= i; j++)
                    {
                        double p = 0.0, dot = 0.0;
                        for (int c = 0; c < d; c++)
                        {
                            p += Math.Abs(fq[b, h, i, c] * fk[b, h, j, c]);
                            dot += fq[b, h, i, c] * fk[b, h, j, c];
                        }
                        double decay = Math.Pow(options.Decay, i - j);
                        mAbs += decay * p;
                        den += decay * dot;
                        for (int e = 0; e < dv; e++) n[e] += decay * p * Math.Abs(v[b, h, j, e]);
                    }
                    // The double sums above carry their own tiny error; a relative margin of 2^-40 covers it.
                    mAbs *= 1.0 + Math.ScaleB(1.0, -40);
                    for (int e = 0; e < dv; e++)
                    {
                        double ne = n[e] * (1.0 + Math.ScaleB(1.0, -40));
                        double bound;
                        if (!options.Normalize)
                        {
                            bound = g * ne;
                        }
                        else
                        {
                            double margin = Math.Abs(den) - g * mAbs - Math.ScaleB(1.0, -40) * mAbs;
                            if (!(margin > 0.0)) return double.PositiveInfinity;
                            bound = g * (ne + ne / margin * mAbs) / margin + u * ne / margin;
                        }
                        worst = Math.Max(worst, bound);
                    }
                }
            }
        }

        return worst;
    }

    private static bool Representable(double[,,,] x, NumberFormat format)
    {
        foreach (double value in x)
        {
            if (Precision.Round(value, format) != value) return false;
        }
        return true;
    }
}
