using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>aux-loss</c>, from any path.</summary>
/// <param name="SwitchLoss">[] the Switch load-balancing loss.</param>
/// <param name="ZLoss">[] the router z-loss.</param>
public sealed record AuxLossOutput(NdArray SwitchLoss, NdArray ZLoss);

/// <summary>The registry entry for <c>aux-loss</c> (proofs/aux-loss.md, Definition).</summary>
/// <remarks>Both losses are validated against a tolerance derived from the inputs (<see cref="AuxLossValidator"/>):
/// a float32 sum over N tokens has an error that grows with N, and a near-tie at a token's top-k boundary lets a candidate
/// count another expert; a fixed allclose preset would be too tight for the one and blind to the other.</remarks>
public static class AuxLossAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<AuxLossOptions, AuxLossOutput> Entry { get; } = new()
    {
        Name = "aux-loss",
        Summary = "Switch load-balancing loss (Megatron, DeepSpeed top-1, DeepSpeed top-2, HF Mixtral conventions) and router z-loss",
        Section = "proofs/aux-loss.md, Definition",
        Seed = _ => new AuxLossOptions(),
        Parameters =
        [
            Param<AuxLossOptions>.Int("k", "2", "experts per token, 1..E (Megatron and HF count all k, DeepSpeed the first)", (o, v) => o with { K = v }),
            Param<AuxLossOptions>.Choice("variant", "megatron",
                "megatron, deepspeed-top1, deepspeed-top2, or hf (HF Mixtral/Qwen-MoE load_balancing_loss_func without attention mask: k x megatron)",
                [("megatron", AuxLossVariant.Megatron), ("deepspeed-top1", AuxLossVariant.DeepSpeedTop1),
                 ("deepspeed-top2", AuxLossVariant.DeepSpeedTop2), ("hf", AuxLossVariant.Hf)],
                (o, v) => o with { Variant = v }),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            OutputSpec<AuxLossOutput>.Of("switch_loss", "", ArrayKind.Float, OutputComparison.Validated, "E sum_e f_e Pbar_e (1 for a uniform router)", r => r.SwitchLoss),
            OutputSpec<AuxLossOutput>.Of("z_loss", "", ArrayKind.Float, OutputComparison.Validated, "mean_i (logsumexp_e X_ie)^2", r => r.ZLoss),
        ],
        Reference = (call, options) =>
        {
            var r = ReferenceResult(call, options);
            return new AuxLossOutput(NdArray.Scalar(r.SwitchLoss), NdArray.Scalar(r.ZLoss));
        },
        Oracle = (call, options) =>
        {
            var r = OracleResult(call, options);
            return new AuxLossOutput(NdArray.Scalar(r.SwitchLoss), NdArray.Scalar(r.ZLoss));
        },
        Paths =
        [
            new PathOf<AuxLossOptions, AuxLossOutput>("kernel", "float32, blocks of 64 tokens in parallel, partial sums combined in order", (call, options) =>
            {
                var logits = call.Array("logits");
                var r = Reference.Kernels.Routing.AuxLoss.Compute(call.Floats("logits"), logits.Shape[0], logits.Shape[1], options);
                return new AuxLossOutput(NdArray.Scalar(r.SwitchLoss), NdArray.Scalar(r.ZLoss));
            }),
        ],
        Validate = new AuxLossValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static AuxLossOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The reference's losses of the call under <paramref name="options"/> (the call's own, or the Megatron
    /// variant whose bounds the hf variant scales), computed once per call and options (<see cref="AlgorithmCall.Memo{T}"/>):
    /// the validator reads P and the counts from it instead of recomputing them.</summary>
    /// <param name="call">The bound call.</param>
    /// <param name="options">The options (k and variant).</param>
    /// <returns>The reference's result, with its scores P.</returns>
    public static AuxLossResult ReferenceResult(AlgorithmCall call, AuxLossOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        return call.Memo(("reference", nameof(AuxLossAlgorithm), options), () => AuxLoss.Compute(call.Matrix("logits"), options));
    }

    /// <summary>What <c>check</c> judges against and bounds its tolerance with, computed once per call and options: beyond
    /// <see cref="FastReference.RoutingWork"/> (work N E) the losses of <see cref="AuxLossFast"/>, equal to the reference's
    /// bit for bit (proofs/aux-loss.md, aux-loss.fast-reference-identical); otherwise <see cref="ReferenceResult"/>.</summary>
    /// <param name="call">The bound call.</param>
    /// <param name="options">The options (k and variant).</param>
    /// <returns>The result, with its scores P.</returns>
    public static AuxLossResult OracleResult(AlgorithmCall call, AuxLossOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        return FastReference.RoutingOracle(call, ("oracle", nameof(AuxLossAlgorithm), options), () => ReferenceResult(call, options),
            x => AuxLossFast.Compute(x, options));
    }

    /// <summary>A random case: awkward shapes, grid, gaussian or wide logits, any k and variant.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int n = TokenChoices[rng.Next(TokenChoices.Length)];
        int e = ExpertChoices[rng.Next(ExpertChoices.Length)];
        int style = rng.Next(3);
        var parameters = new Dictionary<string, string>
        {
            ["k"] = Text(1 + rng.Next(e)),
            ["variant"] = new[] { "megatron", "deepspeed-top1", "deepspeed-top2", "hf" }[rng.Next(4)],
        };
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(Logits(rng, n, e, style), n, e) };
        return new GeneratedCase($"seed {seed}: N={n} E={e} {parameters["variant"]}{(style == 0 ? " ties" : "")}", inputs, parameters);
    }
}
