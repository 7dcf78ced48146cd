using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>topk</c>, from any path.</summary>
/// <param name="Experts">[N, k] each token's experts, best first.</param>
/// <param name="Weights">[N, k] P at those experts, normalized when asked.</param>
public sealed record TopKOutput(NdArray Experts, NdArray Weights);

/// <summary>The registry entry for <c>topk</c> (proofs/topk.md, Definition).</summary>
public static class TopKAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<TopKOptions, TopKOutput> Entry { get; } = new()
    {
        Name = "topk",
        Summary = "token-choice top-k routing: softmax or sigmoid scores, optional selection bias",
        Section = "proofs/topk.md, Definition",
        Seed = call => new TopKOptions { Bias = call.OptionalDoubles("bias") },
        Parameters =
        [
            Param<TopKOptions>.Int("k", "2", "experts per token, 1..E", (o, v) => o with { K = v }),
            ScoreParameter<TopKOptions>((o, v) => o with { Score = v }),
            Param<TopKOptions>.Bool("normalize", "true", "divide each token's k weights by their sum", (o, v) => o with { Normalize = v }),
        ],
        Inputs =
        [
            new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X"),
            new InputSpec("bias", "E", ArrayKind.Float, true, "selection bias b: selects, never weighs (DeepSeek-V3)"),
        ],
        Outputs =
        [
            OutputSpec<TopKOutput>.Of("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated, "each token's experts, best first", r => r.Experts),
            OutputSpec<TopKOutput>.Of("weights", "N,k", ArrayKind.Float, OutputComparison.Validated, "P at those experts, normalized when asked", r => r.Weights),
        ],
        Reference = (call, _) =>
        {
            var result = ReferenceResult(call);
            return new TopKOutput(NdArray.FromMatrix(result.Experts), NdArray.FromMatrix(result.Weights));
        },
        Oracle = (call, _) =>
        {
            var result = OracleResult(call);
            return new TopKOutput(NdArray.FromMatrix(result.Experts), NdArray.FromMatrix(result.Weights));
        },
        Paths =
        [
            new PathOf<TopKOptions, TopKOutput>("kernel", "float32, TensorPrimitives softmax, parallel over tokens", (call, options) =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var result = Reference.Kernels.Routing.TopK.Route(call.Floats("logits"), n, e, options);
                return new TopKOutput(NdArray.Create(result.Experts, n, options.K), NdArray.Create(result.Weights, n, options.K));
            }),
        ],
        Validate = new TopKValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters and inputs, parsed once per call.</summary>
    public static TopKOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The reference's routing of the call, computed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static TopKResult ReferenceResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("reference", nameof(TopKAlgorithm)), () => TopK.Route(call.Matrix("logits"), Options(call)));
    }

    /// <summary>What <c>check</c> judges against, computed once per call: beyond <see cref="FastReference.RoutingWork"/>
    /// (work N E) the routing of <see cref="TopKFast"/>, equal to the reference's bit for bit (proofs/topk.md,
    /// topk.fast-reference-identical); otherwise <see cref="ReferenceResult"/>.</summary>
    /// <param name="call">The call.</param>
    /// <returns>The routing.</returns>
    public static TopKResult OracleResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return FastReference.RoutingOracle(call, ("oracle", nameof(TopKAlgorithm)), () => ReferenceResult(call), x => TopKFast.Route(x, Options(call)));
    }

    /// <summary>The scores P the reference or the oracle ranked, when either has run on this call; null otherwise (the
    /// validator then computes them, as it did before the reference shared them).</summary>
    internal static double[,]? RunScores(AlgorithmCall call) =>
        call.TryGetMemo<TopKResult>(("oracle", nameof(TopKAlgorithm)), out var fast) ? fast.Scores
        : call.TryGetMemo<TopKResult>(("reference", nameof(TopKAlgorithm)), out var result) ? result.Scores : null;

    /// <summary>A random case: awkward shapes, and in half of the cases logits on a coarse grid so that exact ties occur.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int[] tokenChoices = [1, 2, 3, 7, 16, 33, 97];
        int[] expertChoices = [1, 2, 3, 4, 7, 8, 16, 64];
        int n = tokenChoices[rng.Next(tokenChoices.Length)];
        int e = expertChoices[rng.Next(expertChoices.Length)];
        int k = 1 + rng.Next(e);
        bool ties = rng.Next(2) == 0;
        bool sigmoid = rng.Next(3) == 0;
        var logits = new float[n * e];
        for (int i = 0; i < logits.Length; i++)
        {
            logits[i] = ties ? rng.Next(-3, 4) * 0.5f : (float)(2.0 * Gaussian(rng));
        }
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(logits, n, e) };
        if (rng.Next(4) == 0)
        {
            var bias = new float[e];
            for (int j = 0; j < e; j++)
            {
                bias[j] = rng.Next(-2, 3) * 0.125f;
            }
            inputs["bias"] = NdArray.Create(bias, e);
        }
        var parameters = new Dictionary<string, string>
        {
            ["k"] = k.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["score"] = sigmoid ? "sigmoid" : "softmax",
            ["normalize"] = rng.Next(2) == 0 ? "true" : "false",
        };
        string name = $"seed {seed}: N={n} E={e} k={k} {parameters["score"]}{(ties ? " ties" : "")}{(inputs.ContainsKey("bias") ? " bias" : "")}";
        return new GeneratedCase(name, inputs, parameters);
    }

    /// <summary>A standard normal sample (Box-Muller).</summary>
    internal static double Gaussian(Random rng) =>
        Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble())) * Math.Cos(2.0 * Math.PI * rng.NextDouble());
}
