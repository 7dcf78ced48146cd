using System.Globalization;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Transport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>sinkhorn</c>, from any path.</summary>
/// <param name="Plan">[N, E] the transport plan G.</param>
/// <param name="F">[N] the row potential.</param>
/// <param name="G">[E] the column potential.</param>
/// <param name="Iterations">[] completed iterations.</param>
/// <param name="Err">[] the stopping measure at the returned plan.</param>
/// <param name="Converged">[] the stopping rule fired.</param>
/// <param name="Status">[] 0 converged, 1 max_iter, 2 numerical_error.</param>
/// <param name="Experts">[N, k] sbase and ssr only: top-k of each plan row.</param>
/// <param name="Weights">[N, k] sbase and ssr only: the routing weights.</param>
public sealed record SinkhornOutput(
    NdArray Plan, NdArray F, NdArray G, NdArray Iterations, NdArray Err, NdArray Converged, NdArray Status,
    NdArray? Experts = null, NdArray? Weights = null);

/// <summary>The registry entry for <c>sinkhorn</c> (proofs/sinkhorn.md, Definition).</summary>
public static class SinkhornAlgorithm
{
    /// <summary>The CLI names of the methods, in <see cref="SinkhornMethod"/> order.</summary>
    public static IReadOnlyList<string> MethodNames { get; } = ["knopp", "log", "stabilized", "eps-scaling", "sbase", "ssr"];

    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<SinkhornOptions, SinkhornOutput> Entry { get; } = new()
    {
        Name = "sinkhorn",
        Summary = "entropic optimal transport: Sinkhorn (knopp, log, stabilized, eps-scaling), S-BASE and SSR routing",
        Section = "proofs/sinkhorn.md, Definition",
        Seed = call => new SinkhornOptions { RowMarginal = call.OptionalDoubles("a"), ColumnMarginal = call.OptionalDoubles("b") },
        Parameters =
        [
            Param<SinkhornOptions>.Choice("method", "log",
                "knopp, log, stabilized, eps-scaling (POT semantics), sbase (Megatron S-BASE), ssr (Selective Sinkhorn Routing)",
                MethodNames.Select((word, i) => (word, (SinkhornMethod)i)).ToArray(), (o, v) => o with { Method = v }),
            Param<SinkhornOptions>.OptionalDouble("reg",
                "entropic regularization > 0; required except for sbase, which rejects it (its implicit reg is 1)", (o, v) => o with { Regularization = v }),
            Param<SinkhornOptions>.OptionalInt("max_iter", "iteration cap >= 1; default 1000, 10000 for sbase (eps-scaling: outer steps, at least 35)",
                (o, v) => o with { MaxIterations = v }),
            Param<SinkhornOptions>.OptionalDouble("tol", "stopping tolerance >= 0; default 1e-9, 1e-4 for sbase", (o, v) => o with { Tolerance = v }),
            Param<SinkhornOptions>.Int("k", "1", "experts per token for sbase and ssr, 1..E", (o, v) => o with { K = v }),
        ],
        Inputs =
        [
            new InputSpec("cost", "N,E", ArrayKind.Float, true, "cost M (give exactly one of cost and logits)"),
            new InputSpec("logits", "N,E", ArrayKind.Float, true, "router logits X; the cost is -X"),
            new InputSpec("a", "N", ArrayKind.Float, true, "row marginal, entries > 0; default 1/N"),
            new InputSpec("b", "E", ArrayKind.Float, true, "column marginal, entries > 0; default 1/E"),
        ],
        Outputs =
        [
            OutputSpec<SinkhornOutput>.Of("plan", "N,E", ArrayKind.Float, OutputComparison.Validated, "the transport plan G", r => r.Plan),
            OutputSpec<SinkhornOutput>.Of("f", "N", ArrayKind.Float, OutputComparison.Validated, "row potential, f = reg log u", r => r.F),
            OutputSpec<SinkhornOutput>.Of("g", "E", ArrayKind.Float, OutputComparison.Validated, "column potential, g = reg log v", r => r.G),
            OutputSpec<SinkhornOutput>.Of("iterations", "", ArrayKind.Integer, OutputComparison.Validated, "completed iterations (outer steps for eps-scaling)",
                r => r.Iterations),
            OutputSpec<SinkhornOutput>.Of("err", "", ArrayKind.Float, OutputComparison.Validated, "the stopping measure at the returned plan", r => r.Err),
            OutputSpec<SinkhornOutput>.Of("converged", "", ArrayKind.Bool, OutputComparison.Validated, "the stopping rule fired", r => r.Converged),
            OutputSpec<SinkhornOutput>.Of("status", "", ArrayKind.Integer, OutputComparison.Validated, "0 converged, 1 max_iter, 2 numerical_error",
                r => r.Status),
            OutputSpec<SinkhornOutput>.Of("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated, "sbase and ssr: top-k of each plan row",
                r => r.Experts),
            OutputSpec<SinkhornOutput>.Of("weights", "N,k", ArrayKind.Float, OutputComparison.Validated,
                "sbase: sigmoid (k = 1) or softmax of X; ssr: plan renormalized", r => r.Weights),
        ],
        Reference = (call, options) => Output(ReadableSolve(call, options)),
        Oracle = (call, options) => Output(Solve(call, options)),
        Paths =
        [
            new PathOf<SinkhornOptions, SinkhornOutput>("kernel", "float32 log-domain Sinkhorn, TensorPrimitives log-sum-exp, parallel over columns and rows",
                RunKernel)
            {
                Supports = call => call.Parameters.GetChoice("method") == "log",
            },
        ],
        Validate = new SinkhornValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters and inputs. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static SinkhornOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>
    /// What <c>check</c> judges against: the reference run on the call's cost (or negated logits) with the given options,
    /// computed once per call and options (<see cref="AlgorithmCall.Memo{T}"/>), so that the oracle, the validator's
    /// target and its re-runs share one solve. Beyond <see cref="FastReference.SinkhornWork"/> (work N E) the run is
    /// <see cref="SinkhornFast"/>'s, equal to the readable reference's bit for bit (proofs/sinkhorn.md,
    /// sinkhorn.fast-reference-identical); otherwise the readable <see cref="Sinkhorn"/>'s.
    /// </summary>
    /// <param name="call">The call.</param>
    /// <param name="options">The options (the call's, or a variant of them with another cap or tolerance).</param>
    /// <returns>The run; shared: do not modify it.</returns>
    public static SinkhornResult Solve(AlgorithmCall call, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        var shape = call.Array(CostName(call)).Shape;
        bool fast = shape.Count == 2 && UseFast(shape[0], shape[1]);
        return call.Memo(("solve", nameof(SinkhornAlgorithm), fast, options), () => fast
            ? CostName(call) == "cost" ? SinkhornFast.Solve(call.Matrix("cost"), options) : SinkhornFast.SolveLogits(call.Matrix("logits"), options)
            : ReadableSolve(call, options));
    }

    /// <summary>The readable reference on the call's cost (or negated logits): what <c>run --path reference</c> writes.</summary>
    /// <param name="call">The call.</param>
    /// <param name="options">The options.</param>
    /// <returns>The run.</returns>
    public static SinkhornResult ReadableSolve(AlgorithmCall call, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        return CostName(call) == "cost" ? Sinkhorn.Solve(call.Matrix("cost"), options) : Sinkhorn.SolveLogits(call.Matrix("logits"), options);
    }

    /// <summary>The reference on a cost matrix that is not the call's (the validator's perturbed costs): beyond
    /// <see cref="FastReference.SinkhornWork"/> <see cref="SinkhornFast.Solve"/>, otherwise <see cref="Sinkhorn.Solve"/>;
    /// the same result either way.</summary>
    /// <param name="cost">M, [N, E].</param>
    /// <param name="options">The options.</param>
    /// <returns>The run.</returns>
    public static SinkhornResult SolveCost(double[,] cost, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(cost);
        return UseFast(cost.GetLength(0), cost.GetLength(1)) ? SinkhornFast.Solve(cost, options) : Sinkhorn.Solve(cost, options);
    }

    private static bool UseFast(int n, int e) => FastReference.Beyond((long)n * e, FastReference.SinkhornWork);

    /// <summary>The cost M [N, E] of the call: the cost input, or minus the logits.</summary>
    public static double[,] Cost(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        if (CostName(call) == "cost")
        {
            return call.Matrix("cost");
        }
        var x = call.Matrix("logits");
        var m = new double[x.GetLength(0), x.GetLength(1)];
        for (int i = 0; i < x.GetLength(0); i++)
        {
            for (int j = 0; j < x.GetLength(1); j++)
            {
                m[i, j] = -x[i, j];
            }
        }
        return m;
    }

    /// <summary>The outputs of a reference result: floats as f64, integers as i32, converged as bool.</summary>
    public static SinkhornOutput Output(SinkhornResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        bool routed = result.Experts is not null && result.Weights is not null;
        return new SinkhornOutput(
            NdArray.FromMatrix(result.Plan),
            NdArray.FromVector(result.F),
            NdArray.FromVector(result.G),
            NdArray.Scalar(result.Iterations),
            NdArray.Scalar(result.Error),
            NdArray.Scalar(result.Converged),
            NdArray.Scalar((int)result.Status),
            routed ? NdArray.FromMatrix(result.Experts!) : null,
            routed ? NdArray.FromMatrix(result.Weights!) : null);
    }

    /// <summary>"cost" or "logits", whichever the call holds; anything else is bad input.</summary>
    private static string CostName(AlgorithmCall call) => (call.Has("cost"), call.Has("logits")) switch
    {
        (true, false) => "cost",
        (false, true) => "logits",
        (true, true) => throw new InputException($"{call.Source}: holds both 'cost' and 'logits'; give exactly one (the cost is -logits)"),
        _ => throw new InputException($"{call.Source}: array 'cost' or 'logits' is missing (sinkhorn needs one of them, float [N,E])"),
    };

    /// <summary>The float32 kernel (method log only): plan, f, g, err as f32; iterations, converged, status.</summary>
    private static SinkhornOutput RunKernel(AlgorithmCall call, SinkhornOptions options)
    {
        string name = CostName(call);
        var shape = call.Array(name).Shape;
        int n = shape[0], e = shape[1];
        var result = name == "cost"
            ? Reference.Kernels.Transport.Sinkhorn.Solve(call.Floats("cost"), n, e, options)
            : Reference.Kernels.Transport.Sinkhorn.SolveLogits(call.Floats("logits"), n, e, options);
        return new SinkhornOutput(
            NdArray.Create(result.Plan, n, e),
            NdArray.Create(result.F, n),
            NdArray.Create(result.G, e),
            NdArray.Scalar(result.Iterations),
            NdArray.Scalar((float)result.Error),
            NdArray.Scalar(result.Converged),
            NdArray.Scalar((int)result.Status));
    }

    /// <summary>A random case: awkward shapes, logits or cost (a quarter on a coarse grid, so plan rows tie), optional
    /// marginals, every method (log in more than half, so that the kernel path gets most cases), small iteration caps,
    /// tolerances a float32 kernel can reach.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int[] tokenChoices = [1, 2, 3, 5, 7, 16, 33];
        int[] expertChoices = [1, 2, 3, 4, 8, 16];
        int n = tokenChoices[rng.Next(tokenChoices.Length)];
        int e = expertChoices[rng.Next(expertChoices.Length)];
        string method = rng.Next(5) < 3 ? "log" : MethodNames[rng.Next(MethodNames.Count)];
        double scale = new[] { 0.5, 1.0, 3.0 }[rng.Next(3)];
        bool grid = rng.Next(4) == 0;
        var values = new float[n * e];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = grid ? rng.Next(-3, 4) * 0.25f * (float)scale : (float)(scale * TopKAlgorithm.Gaussian(rng));
        }
        bool logits = rng.Next(2) == 0;
        var inputs = new Dictionary<string, NdArray> { [logits ? "logits" : "cost"] = NdArray.Create(values, n, e) };
        if (rng.Next(4) == 0)
        {
            inputs["a"] = NdArray.Create(RandomMarginal(rng, n), n);
            inputs["b"] = NdArray.Create(RandomMarginal(rng, e), e);
        }
        var parameters = new Dictionary<string, string> { ["method"] = method };
        string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        if (method == "sbase")
        {
            parameters["k"] = (1 + rng.Next(e)).ToString(CultureInfo.InvariantCulture);
        }
        else
        {
            parameters["reg"] = Text(new[] { 0.05, 0.1, 0.3, 1.0, 3.0 }[rng.Next(5)]);
            if (method == "ssr")
            {
                parameters["k"] = (1 + rng.Next(e)).ToString(CultureInfo.InvariantCulture);
            }
        }
        int[] caps = method == "eps-scaling" ? [40, 60] : [1, 7, 30, 100, 300];
        parameters["max_iter"] = caps[rng.Next(caps.Length)].ToString(CultureInfo.InvariantCulture);
        if (rng.Next(2) == 0)
        {
            parameters["tol"] = Text(new[] { 1e-4, 1e-5 }[rng.Next(2)]);
        }
        string name = $"seed {seed}: N={n} E={e} {method} {string.Join(" ", parameters.Where(p => p.Key != "method").Select(p => $"{p.Key}={p.Value}"))}"
            + $"{(grid ? " grid" : "")}{(logits ? " logits" : " cost")}{(inputs.ContainsKey("a") ? " marginals" : "")}";
        return new GeneratedCase(name, inputs, parameters);
    }

    private static double[] RandomMarginal(Random rng, int count)
    {
        var w = new double[count];
        for (int i = 0; i < count; i++)
        {
            w[i] = 0.5 + rng.NextDouble();
        }
        double sum = w.Sum();
        return w.Select(x => x / sum).ToArray();
    }
}
