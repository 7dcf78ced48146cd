using Reference.Harness.Comparison;
using Reference.Harness.Golden;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness;

/// <summary>One row of the selfcheck table: one algorithm and one path over all its cases.</summary>
/// <param name="Algorithm">The algorithm's CLI name.</param>
/// <param name="Path">"reference" (checked against the golden expected outputs) or an optimized path (checked against the reference).</param>
/// <param name="Cases">How many cases ran.</param>
/// <param name="Failures">How many cases failed.</param>
/// <param name="WorstError">The largest max-abs error over all compared arrays (0 when only indices were compared).</param>
/// <param name="FirstFailure">A one-line description of the first failure, or null.</param>
public sealed record SelfCheckRow(string Algorithm, string Path, int Cases, int Failures, double WorstError, string? FirstFailure)
{
    /// <summary>PASS when no case failed and at least one ran.</summary>
    public string Verdict => Failures == 0 && Cases > 0 ? "PASS" : "FAIL";

    /// <summary>The largest margin (error / bound, <see cref="ComparisonReport.Margin"/>) over the row's reports that
    /// have one: how close to the edge the path came (below 1 passes). Null when no report had a bound.</summary>
    public double? WorstMargin { get; init; }
}

/// <summary>
/// The main job (proofs/cli.md, Definition: Verbs): for every registered algorithm, checks the reference against its golden cases
/// (and their MANIFEST), and every optimized path against the reference on the golden cases and on seeded random cases.
/// </summary>
public static class SelfCheck
{
    /// <summary>Runs the selfcheck.</summary>
    /// <param name="algorithms">The algorithms to check.</param>
    /// <param name="golden">The golden data, or null to skip it.</param>
    /// <param name="seed">The first seed of the random cases; case c uses seed + c.</param>
    /// <param name="cases">Random cases per algorithm.</param>
    /// <param name="progress">Called with a short line as each algorithm and path starts.</param>
    /// <param name="onlyPath">Only this path's rows (<c>reference</c>: only the golden rows of the references); null: every path.
    /// Algorithms without that path are left out.</param>
    /// <param name="device">The device the optimized paths run on (<see cref="Devices"/>); paths that do not run there are left out.</param>
    /// <returns>One row per algorithm and path.</returns>
    /// <exception cref="InputException">A path that would run is unavailable on the device here (<see cref="OptimizedPath.Unavailable"/>);
    /// nothing has run.</exception>
    public static IReadOnlyList<SelfCheckRow> Run(
        IEnumerable<Algorithm> algorithms, GoldenData? golden, int seed, int cases, Action<string>? progress = null,
        string? onlyPath = null, string device = Devices.Cpu)
    {
        ArgumentNullException.ThrowIfNull(algorithms);
        device = Devices.Parse(device);
        var selected = algorithms.ToList();

        // 1. Before any work: every path that would run is usable on the device here (OptimizedPath.Unavailable).
        foreach (var algorithm in selected)
        {
            foreach (var path in algorithm.Paths.Where(p => (onlyPath is null || p.Name == onlyPath) && p.Devices.Contains(device)))
            {
                algorithm.CheckAvailable(path.Name, device);
            }
        }
        var rows = new List<SelfCheckRow>();
        foreach (var algorithm in selected)
        {
            if (onlyPath is not null && !algorithm.PathNames.Contains(onlyPath))
            {
                continue;
            }
            var goldenCases = golden?.Cases(algorithm.Name) ?? Array.Empty<GoldenCase>();
            var paths = algorithm.Paths.Where(p => (onlyPath is null || p.Name == onlyPath) && p.Devices.Contains(device)).ToList();
            if (onlyPath is null or "reference")
            {
                rows.Add(ReferenceRow(algorithm, golden, goldenCases, progress));
            }

            // 2. Each optimized path against the reference, on golden and random cases.
            foreach (var path in paths)
            {
                progress?.Invoke($"{algorithm.Name}: {path.Name} on {goldenCases.Count} golden + {cases} random cases");
                var pathTally = new Tally();
                foreach (var c in goldenCases)
                {
                    pathTally.Run($"golden {c.Name}", path, () => algorithm.Bind(c.ReadInputs(), c.Parameters, c.InputPath, device),
                        call => CheckPath(algorithm, path, call));
                }
                for (int i = 0; i < cases; i++)
                {
                    var generated = algorithm.Generate(seed + i);
                    pathTally.Run(generated.Name, path, () => algorithm.Bind(generated.Inputs, generated.Parameters, generated.Name, device),
                        call => CheckPath(algorithm, path, call));
                }
                rows.Add(pathTally.Row(algorithm.Name, path.Name));
            }
        }
        return rows;
    }

    /// <summary>The reference against its golden expected outputs, and the manifest.</summary>
    private static SelfCheckRow ReferenceRow(Algorithm algorithm, GoldenData? golden, IReadOnlyList<GoldenCase> goldenCases, Action<string>? progress)
    {

        progress?.Invoke($"{algorithm.Name}: reference on {goldenCases.Count} golden cases");
        var tally = new Tally();
        foreach (var problem in golden?.VerifyManifest(algorithm.Name) ?? Array.Empty<string>())
        {
            tally.Fail(problem);
        }
        foreach (var c in goldenCases)
        {
            tally.Run($"golden {c.Name}", () =>
            {
                var call = algorithm.Bind(c.ReadInputs(), c.Parameters, c.InputPath);
                var expected = c.ReadExpected();
                return algorithm.Check(call, algorithm.RunReference(call), expected, c.ExpectedPath);
            });
        }
        return tally.Row(algorithm.Name, "reference");
    }

    /// <summary>Runs an optimized path and checks its outputs against the reference.</summary>
    public static IReadOnlyList<ComparisonReport> CheckPath(Algorithm algorithm, OptimizedPath path, AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        ArgumentNullException.ThrowIfNull(path);
        var expected = algorithm.RunReference(call);
        var candidate = algorithm.Run(call, path.Name);
        return algorithm.Check(call, expected, candidate, $"{path.Name} output");
    }

    private sealed class Tally
    {
        private int cases;
        private int failures;
        private double worst;
        private double? margin;
        private string? first;

        public void Fail(string why)
        {
            cases++;
            failures++;
            first ??= why;
        }

        public void Run(string name, Func<IReadOnlyList<ComparisonReport>> check)
        {
            try
            {
                var reports = check();
                cases++;
                foreach (var r in reports.Where(r => double.IsFinite(r.MaxAbsError)))
                {
                    worst = Math.Max(worst, r.MaxAbsError);
                }
                foreach (var r in reports.Where(r => r.Margin is not null))
                {
                    margin = Math.Max(margin ?? 0.0, r.Margin!.Value);
                }
                var failed = reports.FirstOrDefault(r => !r.Passed);
                if (failed is not null)
                {
                    failures++;
                    first ??= $"{name}: {failed.Summary()}";
                }
            }
            catch (Exception ex) when (ex is InputException or TensorFileException or ArgumentException or InvalidOperationException)
            {
                Fail($"{name}: {ex.Message}");
            }
        }

        /// <summary>Binds a case and checks it, unless the path does not support it (then the case is not counted).</summary>
        public void Run(string name, OptimizedPath path, Func<AlgorithmCall> bind, Func<AlgorithmCall, IReadOnlyList<ComparisonReport>> check)
        {
            AlgorithmCall? call = null;
            try
            {
                call = bind();
            }
            catch (Exception ex) when (ex is InputException or TensorFileException or ArgumentException)
            {
                Fail($"{name}: {ex.Message}");
                return;
            }
            if (path.Supports is { } supports && !supports(call))
            {
                return;
            }
            Run(name, () => check(call));
        }

        public SelfCheckRow Row(string algorithm, string path) => new(algorithm, path, cases, failures, worst, first) { WorstMargin = margin };
    }
}
