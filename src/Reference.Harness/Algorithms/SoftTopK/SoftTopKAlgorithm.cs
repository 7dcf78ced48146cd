using System.Globalization;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>softtopk</c>, from any path.</summary>
/// <param name="Y">[N, E] the soft top-k indicator.</param>
/// <param name="Jacobian">[N, E, E] dy/dx, when asked (jacobian=true); null otherwise.</param>
public sealed record SoftTopKOutput(NdArray Y, NdArray? Jacobian);

/// <summary>The registry entry for <c>softtopk</c> (proofs/softtopk.md, Definition).</summary>
public static class SoftTopKAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<SoftTopKOptions, SoftTopKOutput> Entry { get; } = new()
    {
        Name = "softtopk",
        Summary = "SoftTopk: a smooth top-k indicator y in [0,1]^E with sum k (sigmoid threshold or 2-anchor entropic OT), exact Jacobian",
        Section = "proofs/softtopk.md, Definition",
        Seed = _ => new SoftTopKOptions { K = 0, Tau = 0.0 },
        Parameters =
        [
            Param<SoftTopKOptions>.Int("k", null, "the mass of each row of y, 0 < k < E", (o, v) => o with { K = v }),
            Param<SoftTopKOptions>.Double("tau", null, "the temperature, > 0 (threshold: units of x; entropic: of the normalized scores)", (o, v) => o with { Tau = v }),
            Param<SoftTopKOptions>.Choice("method", "threshold", "sigmoid((x - t)/tau) with sum k, or the entropic OT plan to the anchors 0 and 1",
                [("threshold", SoftTopKMethod.Threshold), ("entropic", SoftTopKMethod.Entropic)], (o, v) => o with { Method = v }),
            Param<SoftTopKOptions>.Bool("jacobian", "false", "also output dy/dx [N,E,E]", (o, v) => o with { Jacobian = v }),
        ],
        Inputs =
        [
            new InputSpec("x", "N,E", ArrayKind.Float, false, "scores, one row per token"),
        ],
        Outputs =
        [
            OutputSpec<SoftTopKOutput>.Of("y", "N,E", ArrayKind.Float, OutputComparison.Validated, "the soft top-k indicator; tolerance derived from tau and the candidate's precision", r => r.Y),
            OutputSpec<SoftTopKOutput>.Of("jacobian", "N,E,E", ArrayKind.Float, OutputComparison.Validated, "jacobian[i,a,b] = dy[i,a]/dx[i,b], only when jacobian=true", r => r.Jacobian),
        ],
        Reference = (call, options) =>
        {
            var result = Reference.Routing.SoftTopK.Compute(call.Matrix("x"), options);
            return new SoftTopKOutput(NdArray.FromMatrix(result.Y), result.Jacobian is { } j ? FromCube(j) : null);
        },
        Paths =
        [
            new PathOf<SoftTopKOptions, SoftTopKOutput>("kernel", "float32, TensorPrimitives sigmoids, two-stage threshold; entropic by its closed form; parallel over rows", (call, options) =>
            {
                var x = call.Array("x");
                int n = x.Shape[0], e = x.Shape[1];
                var result = Reference.Kernels.Routing.SoftTopK.Compute(call.Floats("x"), n, e, options);
                return new SoftTopKOutput(NdArray.Create(result.Y, n, e), result.Jacobian is { } j ? NdArray.Create(j, n, e, e) : null);
            }),
        ],
        Validate = new SoftTopKValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static SoftTopKOptions Options(AlgorithmCall call) => Entry.Options(call);

    private static NdArray FromCube(double[,,] cube)
    {
        int n = cube.GetLength(0), a = cube.GetLength(1), b = cube.GetLength(2);
        var flat = new double[cube.Length];
        Buffer.BlockCopy(cube, 0, flat, 0, flat.Length * sizeof(double));
        return NdArray.Create(flat, n, a, b);
    }

    /// <summary>A random case: awkward shapes; rows with exact ties, constant rows, wide and narrow scales; tau from
    /// sharp to smooth; either method; the Jacobian in about a third of the cases.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int[] tokenChoices = [1, 2, 3, 7, 16, 33];
        int[] expertChoices = [2, 3, 4, 5, 7, 8, 16, 64];
        double[] tauChoices = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0];
        int n = tokenChoices[rng.Next(tokenChoices.Length)];
        int e = expertChoices[rng.Next(expertChoices.Length)];
        int k = 1 + rng.Next(e - 1);
        double tau = tauChoices[rng.Next(tauChoices.Length)];
        bool entropic = rng.Next(2) == 0;
        bool jacobian = rng.Next(3) == 0;
        int style = rng.Next(3);
        var x = new float[n * e];
        for (int i = 0; i < n; i++)
        {
            bool constant = rng.Next(8) == 0;
            for (int j = 0; j < e; j++)
            {
                x[i * e + j] = constant ? 0.75f
                    : style == 0 ? rng.Next(-3, 4) * 0.5f                          // exact ties
                    : style == 1 ? (float)TopKAlgorithm.Gaussian(rng)
                    : (float)(8.0 * TopKAlgorithm.Gaussian(rng));                  // wide: many y at 0 or 1
            }
        }
        var inputs = new Dictionary<string, NdArray> { ["x"] = NdArray.Create(x, n, e) };
        var parameters = new Dictionary<string, string>
        {
            ["k"] = k.ToString(CultureInfo.InvariantCulture),
            ["tau"] = tau.ToString("R", CultureInfo.InvariantCulture),
            ["method"] = entropic ? "entropic" : "threshold",
            ["jacobian"] = jacobian ? "true" : "false",
        };
        string name = $"seed {seed}: N={n} E={e} k={k} tau={parameters["tau"]} {parameters["method"]}{(jacobian ? " jacobian" : "")} style {style}";
        return new GeneratedCase(name, inputs, parameters);
    }
}
