using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>aux-loss</c> (SEMANTICS.md sections 5 and 12).</summary>
/// <remarks>Both losses are validated against a tolerance derived from the inputs (<see cref="AuxLossValidator"/>):
/// a float32 sum over N tokens has an error that grows with N, and a near-tie at a token's top-k boundary lets a candidate
/// count another expert; a fixed allclose preset would be too tight for the one and blind to the other.</remarks>
public static class AuxLossAlgorithm
{
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "aux-loss",
        Summary = "Switch load-balancing loss (Megatron, DeepSpeed top-1, DeepSpeed top-2, HF Mixtral conventions) and router z-loss",
        Section = "SEMANTICS.md section 5",
        Parameters =
        [
            new ParameterSpec("k", ParameterKind.Int, "2", "experts per token, 1..E (Megatron and HF count all k, DeepSpeed the first)"),
            new ParameterSpec("variant", ParameterKind.Choice, "megatron",
                "megatron, deepspeed-top1, deepspeed-top2, or hf (HF Mixtral/Qwen-MoE load_balancing_loss_func without attention mask: k x megatron)",
                ["megatron", "deepspeed-top1", "deepspeed-top2", "hf"]),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            new OutputSpec("switch_loss", "", ArrayKind.Float, OutputComparison.Validated, "E sum_e f_e Pbar_e (1 for a uniform router)"),
            new OutputSpec("z_loss", "", ArrayKind.Float, OutputComparison.Validated, "mean_i (logsumexp_e X_ie)^2"),
        ],
        Reference = call =>
        {
            var r = AuxLoss.Compute(call.Matrix("logits"), Options(call));
            return new Dictionary<string, NdArray>
            {
                ["switch_loss"] = NdArray.Scalar(r.SwitchLoss),
                ["z_loss"] = NdArray.Scalar(r.ZLoss),
            };
        },
        Paths =
        [
            new OptimizedPath("kernel", "float32, blocks of 64 tokens in parallel, partial sums combined in order", call =>
            {
                var logits = call.Array("logits");
                var r = Reference.Kernels.Routing.AuxLoss.Compute(call.Floats("logits"), logits.Shape[0], logits.Shape[1], Options(call));
                return new Dictionary<string, NdArray>
                {
                    ["switch_loss"] = NdArray.Scalar(r.SwitchLoss),
                    ["z_loss"] = NdArray.Scalar(r.ZLoss),
                };
            }),
        ],
        Validate = new AuxLossValidator(),
        Generate = seed =>
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
        },
    };

    /// <summary>The reference options from the call's parameters. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static AuxLossOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", nameof(AuxLossAlgorithm)), () => ReadOptions(call));
    }

    private static AuxLossOptions ReadOptions(AlgorithmCall call)
    {
        return new AuxLossOptions
        {
            K = call.Parameters.GetInt("k"),
            Variant = call.Parameters.GetChoice("variant") switch
            {
                "deepspeed-top1" => AuxLossVariant.DeepSpeedTop1,
                "deepspeed-top2" => AuxLossVariant.DeepSpeedTop2,
                "hf" => AuxLossVariant.Hf,
                _ => AuxLossVariant.Megatron,
            },
        };
    }
}
