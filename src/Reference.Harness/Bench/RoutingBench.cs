using System.Globalization;
using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Bench;

/// <summary>
/// <c>reference bench routing</c>: topk, capacity, expert-choice and aux-loss on the same router logits, each through every
/// path the registry holds at run time (the double reference, the float32 <c>kernel</c>, <c>torch</c> when registered),
/// plus the whole <c>check</c> of a kernel candidate: reading the input and candidate files, binding, running the
/// reference and judging (what a CI user waits for, without the process start). The solvers of one algorithm and size
/// take turns (<see cref="Interleaved"/>); the first solver, the reference (as <c>run</c> without <c>--path</c> computes it:
/// the readable reference, or beyond a size a fast double reference proven equal to it), is what the ratios are against.
/// </summary>
/// <remarks>
/// Logits X_ie are standard normal (seeded), float32. Parameters: k from the size; everything else at its default
/// (softmax scores; capacity factor 1 with choice-position dropping; expert-choice C = ceil(N k / E); aux-loss megatron).
/// Every path gets a fresh bound call per run, so nothing one run memoizes helps the next.
/// </remarks>
public sealed class RoutingBench : IBench
{
    /// <summary>The algorithms it times, in report order.</summary>
    public static IReadOnlyList<string> Algorithms { get; } = ["topk", "capacity", "expert-choice", "aux-loss"];

    /// <summary>The sizes it runs without <c>--size</c>.</summary>
    public static IReadOnlyList<BenchSize> DefaultSizes { get; } = [new BenchSize(4096, 64, 2), new BenchSize(65536, 64, 8)];

    /// <summary>The first solver: what <c>check</c> judges against (<see cref="Algorithm.RunOracle"/>), in double
    /// precision: the readable reference, or beyond <see cref="Algorithms.FastReference.RoutingWork"/> its fast path, equal
    /// to it bit for bit.</summary>
    public const string OracleSolver = "oracle (double)";

    /// <summary>The solver name of the whole check of a kernel candidate.</summary>
    public const string CheckSolver = "check (kernel candidate)";

    /// <summary>The note a failed check of the kernel candidate leaves (what <see cref="Disagreement"/> looks for).</summary>
    public const string CheckFailed = "the kernel candidate FAILED check";

    /// <inheritdoc />
    public string Name => "routing";

    /// <inheritdoc />
    public string Summary =>
        "topk, capacity, expert-choice, aux-loss: oracle (double), kernel (float32), torch when registered, and the whole check of a kernel candidate; sizes N/E/k (default 4096/64/2, 65536/64/8)";

    /// <summary>Adds the routing and Sinkhorn benchmarks to <see cref="BenchRegistry"/> (the CLI calls this at start-up).</summary>
    public static void Register()
    {
        BenchRegistry.Add(new RoutingBench());
        BenchRegistry.Add(new SinkhornBench());
    }

    /// <inheritdoc />
    public BenchRecord Run(BenchRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var sizes = request.Sizes.Count == 0 ? DefaultSizes : request.Sizes.Select(ParseSize).ToList();
        var machine = BenchMachine.Current();
        var cases = new List<BenchCase>();
        string dir = Path.Combine(Path.GetTempPath(), "reference-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            foreach (var size in sizes)
            {
                var logits = NdArray.Create(Logits(size, request.Seed), size.Tokens, size.Experts);
                foreach (string name in Algorithms)
                {
                    cases.AddRange(RunOne(name, size, logits, request, dir));
                }
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
        return new BenchRecord(Name, machine, cases);
    }

    /// <inheritdoc />
    public string? Disagreement(BenchRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var failed = record.Cases.Where(c => c.Note?.Contains(CheckFailed, StringComparison.Ordinal) == true).Select(c => c.Size).ToList();
        return failed.Count == 0 ? null : $"{CheckFailed} at {string.Join(", ", failed)}";
    }

    /// <summary>Parses one <c>--size</c>: N/E/k.</summary>
    /// <exception cref="InputException">Not N/E/k.</exception>
    public static BenchSize ParseSize(string text)
    {
        try
        {
            return BenchSize.Parse(text);
        }
        catch (FormatException ex)
        {
            throw new InputException($"option '--size': {ex.Message}", ex);
        }
    }

    /// <summary>Standard normal logits [N * E] in float32, seeded.</summary>
    public static float[] Logits(BenchSize size, int seed)
    {
        ArgumentNullException.ThrowIfNull(size);
        var rng = new Random(seed);
        var x = new float[size.Tokens * size.Experts];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = (float)TopKAlgorithm.Gaussian(rng);
        }
        return x;
    }

    private static IEnumerable<BenchCase> RunOne(string name, BenchSize size, NdArray logits, BenchRequest request, string dir)
    {
        var algorithm = AlgorithmRegistry.Find(name) ?? throw new InvalidOperationException($"{name} is not registered");
        string label = $"{name} {size}";
        var inputs = new Dictionary<string, NdArray> { ["logits"] = logits };
        var parameters = new Dictionary<string, string> { ["k"] = size.K.ToString(CultureInfo.InvariantCulture) };
        AlgorithmCall Bind() => algorithm.Bind(inputs, parameters, "bench");

        // The reference is what check judges against (RunOracle): the readable reference, or beyond a size the fast double
        // reference proven equal to it (expert-choice beyond E C N = 2^24), as `reference run` without --path.
        var solvers = new List<TimedSolver> { new(OracleSolver, () => Interleaved.Time(() => algorithm.RunOracle(Bind()))) };
        foreach (var path in algorithm.Paths.Where(p => p.Devices.Contains(Devices.Cpu)))
        {
            string? skip = path.Supports is { } supports && !supports(Bind()) ? $"skipped: {path.Name} does not support this call (its Supports rule)" : null;
            solvers.Add(new TimedSolver(path.Name == "kernel" ? "kernel (float32)" : path.Name, () => Interleaved.Time(() => algorithm.Run(Bind(), path.Name)), skip));
        }

        // The check of a kernel candidate: its files are written once; every run reads, binds, runs the reference, judges.
        string input = Path.Combine(dir, $"{name}-input.npz"), candidate = Path.Combine(dir, $"{name}-candidate.npz");
        string? checkSkip = null;
        if (algorithm.Paths.Any(p => p.Name == "kernel"))
        {
            TensorFile.Write(input, inputs);
            TensorFile.Write(candidate, algorithm.Run(Bind(), "kernel"));
        }
        else
        {
            checkSkip = $"skipped: {name} has no kernel path";
        }
        bool? passed = null;
        solvers.Add(new TimedSolver(CheckSolver, () => Interleaved.Time(() =>
        {
            var call = algorithm.Bind(TensorFile.Read(input), parameters, input);
            var reports = algorithm.Check(call, algorithm.RunOracle(call), TensorFile.Read(candidate), candidate);
            passed = (passed ?? true) && reports.All(r => r.Passed);
        }), checkSkip));

        var results = Interleaved.Run(solvers, request.Repeats, solver => request.Progress($"{label}: {solver}"));
        double? reference = results[0].MedianMs;
        foreach (var r in results)
        {
            string note = r.Describe();
            if (r.MedianMs is { } ms && reference is { } refMs && r != results[0])
            {
                note += string.Create(CultureInfo.InvariantCulture, $"; {ms / refMs:0.000}x the oracle's time");
            }
            if (r.Name == CheckSolver && passed == false)
            {
                note += "; " + CheckFailed;
            }
            yield return new BenchCase(label, r.Name, r.MedianMs, r.Runs, null, null, note);
        }
    }
}
