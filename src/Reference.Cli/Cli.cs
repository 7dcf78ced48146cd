using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Reference.Flow;
using Reference.Harness;
using Reference.Harness.Bench;
using Reference.Harness.Comparison;
using Reference.Harness.Golden;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Flow;
using Reference.Reports;

namespace Reference.Cli;

/// <summary>
/// The <c>reference</c> command (proofs/cli.md, Definition). Exit codes: 0 all pass, 1 a mismatch, 2 bad usage or bad input
/// (with a one-line reason on stderr that names the file and the array).
/// </summary>
public static class Cli
{
    /// <summary>Exit code: everything passed.</summary>
    public const int Pass = 0;

    /// <summary>Exit code: a candidate mismatched, or a selfcheck row failed.</summary>
    public const int Mismatch = 1;

    /// <summary>Exit code: bad usage or bad input.</summary>
    public const int BadInput = 2;

    private const string Usage = """
        usage:
          reference list [--json]
          reference run <algorithm> --input IN.npz --output OUT.npz [--param name=value]... [--params FILE.json] [--path reference|<optimized>] [--device cpu|cuda]
              (no --path: what check judges against; for maxscore beyond N k * N E = 2^25, the fast optimum, certified exactly)
          reference check <algorithm> --input IN.npz --candidate CAND.npz [--param name=value]... [--params FILE.json] [--json REPORT.json] [--html REPORT.html]
          reference check <algorithm> --input IN.npz --path <optimized> [--device cpu|cuda] [--param name=value]... [--json REPORT.json] [--html REPORT.html]
              (--path: the candidate is that optimized path's outputs on the input)
          reference selfcheck [--seed S] [--cases N] [--json REPORT.json] [--html REPORT.html] [--data DIR] [--only ALGORITHM] [--path PATH] [--device cpu|cuda]
          reference flow --dimacs FILE.min [--solver reference|ortools|lemon]
          reference bench maxscore [--size N/E/k]... [--repeats R] [--seed S] [--json FILE] [--html FILE]
          reference bench NAME [--size S,...] [--repeats R] [--seed S] [--json FILE] [--html FILE]   (NAME: attention, routing, sinkhorn, as registered)
          reference bench table RECORD.json... [--html FILE]   (a Markdown table of benchmark records, e.g. data/bench/*.json)
        exit codes: 0 pass, 1 mismatch, 2 bad usage or bad input
        """;

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Runs the command.</summary>
    /// <param name="args">The arguments, verb first.</param>
    /// <param name="stdout">Where results go.</param>
    /// <param name="stderr">Where reasons, warnings and progress go.</param>
    /// <returns>The exit code.</returns>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            (args.Length == 0 ? stderr : stdout).WriteLine(Usage);
            return args.Length == 0 ? BadInput : Pass;
        }
        var rest = args.Skip(1).ToArray();
        if (rest.Any(a => a is "-h" or "--help") && VerbUsage(args[0]) is { } verbUsage)
        {
            stdout.WriteLine(verbUsage);
            return Pass;
        }
        try
        {
            return args[0] switch
            {
                "list" => List(Arguments.Parse(rest, [], ["--json"]), stdout),
                "run" => RunAlgorithm(Arguments.Parse(rest, ["--input", "--output", "--path", "--params", "--device"], []), stdout, stderr),
                "check" => Check(Arguments.Parse(rest, ["--input", "--candidate", "--json", "--params", "--path", "--device", "--html"], []), stdout, stderr),
                "flow" => FlowCommand(Arguments.Parse(rest, ["--dimacs", "--solver"], []), stdout),
                "bench" => BenchCommand(Arguments.Parse(rest, ["--size", "--repeats", "--seed", "--json", "--html"], []), stdout, stderr),
                "selfcheck" => SelfCheckCommand(Arguments.Parse(rest, ["--seed", "--cases", "--json", "--data", "--only", "--path", "--device", "--html"], []), stdout, stderr),
                _ => throw new InputException($"unknown command '{args[0]}'; commands: list, run, check, selfcheck, flow, bench"),
            };
        }
        catch (Exception ex) when (ex is InputException or TensorFileException or IOException or UnauthorizedAccessException)
        {
            string message = OneLine(ex.Message);
            stderr.WriteLine($"reference: {message}");
            WriteErrorReport(args, message, stderr);
            return BadInput;
        }
    }

    /// <summary>
    /// <c>--json FILE</c> always gets a report: on exit 2 it holds <c>"status": "error"</c> and the one-line reason, so a CI
    /// that parses the report never finds it missing or stale.
    /// </summary>
    private static void WriteErrorReport(string[] args, string message, TextWriter stderr)
    {
        string? path = null;
        for (int i = 1; i < args.Length; i++)
        {
            if (args[i] == "--json" && i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                path = args[i + 1];
            }
            else if (args[i].StartsWith("--json=", StringComparison.Ordinal))
            {
                path = args[i]["--json=".Length..];
            }
        }
        if (string.IsNullOrEmpty(path))
        {
            return;
        }
        try
        {
            File.WriteAllText(path, JsonSerializer.Serialize(new { status = "error", command = args[0], message, exit_code = BadInput }, Json));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"reference: cannot write the error report {path}: {OneLine(ex.Message)}");
        }
    }

    /// <summary>The usage lines of one verb (for <c>reference VERB --help</c>), or null for an unknown verb.</summary>
    private static string? VerbUsage(string verb)
    {
        var lines = Usage.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        int start = lines.FindIndex(l => l.TrimStart().StartsWith($"reference {verb} ", StringComparison.Ordinal) || l.Trim() == $"reference {verb}");
        if (start < 0)
        {
            return null;
        }
        var block = new List<string> { "usage:", lines[start] };
        for (int i = start + 1; i < lines.Count && lines[i].StartsWith("      ", StringComparison.Ordinal); i++)
        {
            block.Add(lines[i]);
        }
        block.Add(lines.First(l => l.StartsWith("exit codes", StringComparison.Ordinal)));
        return string.Join(Environment.NewLine, block);
    }

    private static int List(Arguments a, TextWriter stdout)
    {
        if (a.Flag("--json"))
        {
            var doc = AlgorithmRegistry.All.Select(alg => new
            {
                name = alg.Name,
                summary = alg.Summary,
                section = alg.Section,
                parameters = alg.Parameters.Select(p => new { name = p.Name, kind = p.Kind.ToString().ToLowerInvariant(), @default = p.Default, doc = p.Doc, choices = p.Choices }),
                inputs = alg.Inputs.Select(i => new { name = i.Name, shape = i.Shape, kind = i.Kind.ToString().ToLowerInvariant(), optional = i.Optional, doc = i.Doc }),
                outputs = alg.Outputs.Select(o => new { name = o.Name, shape = o.Shape, kind = o.Kind.ToString().ToLowerInvariant(), comparison = o.Comparison.ToString().ToLowerInvariant(), doc = o.Doc }),
                paths = alg.PathNames,
                devices = alg.PathNames.ToDictionary(p => p, alg.DevicesOf),
            });
            stdout.WriteLine(JsonSerializer.Serialize(doc, Json));
            return Pass;
        }
        foreach (var alg in AlgorithmRegistry.All)
        {
            stdout.WriteLine($"{alg.Name}: {alg.Summary} ({alg.Section})");
            stdout.WriteLine($"  paths: {string.Join(", ", alg.PathNames.Select(p => $"{p} ({string.Join(", ", alg.DevicesOf(p))})"))}");
            foreach (var i in alg.Inputs)
            {
                stdout.WriteLine($"  input  {i.Name}{(i.Optional ? "?" : "")} [{i.Shape}] {i.Kind.ToString().ToLowerInvariant()}: {i.Doc}");
            }
            foreach (var p in alg.Parameters)
            {
                var choices = p.Choices is null ? "" : $" ({string.Join("|", p.Choices)})";
                stdout.WriteLine($"  param  {p.Name} = {p.Default ?? "(no fixed default)"}{choices}: {p.Doc}");
            }
            foreach (var o in alg.Outputs)
            {
                stdout.WriteLine($"  output {o.Name} [{o.Shape}] {o.Kind.ToString().ToLowerInvariant()}, {o.Comparison.ToString().ToLowerInvariant()}: {o.Doc}");
            }
        }
        return Pass;
    }

    private static (Algorithm Algorithm, AlgorithmCall Call) Prepare(Arguments a, string verb)
    {
        if (a.Positional.Count != 1)
        {
            throw new InputException($"{verb} takes one algorithm name; known: {string.Join(", ", AlgorithmRegistry.All.Select(x => x.Name))}");
        }
        var algorithm = AlgorithmRegistry.Find(a.Positional[0])
            ?? throw new InputException($"unknown algorithm '{a.Positional[0]}'; known: {string.Join(", ", AlgorithmRegistry.All.Select(x => x.Name))}");
        var input = a.Required("--input");
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        if (a.Option("--params") is { } paramsFile)
        {
            if (!File.Exists(paramsFile))
            {
                throw new InputException($"{paramsFile}: file not found");
            }
            foreach (var (k, v) in GoldenData.ReadParameters(paramsFile))
            {
                parameters[k] = v;
            }
        }
        foreach (var (k, v) in a.Parameters)
        {
            parameters[k] = v;
        }
        // The device before any work: one the path runs on, and usable here (a GPU and a CUDA build where it needs them).
        var device = Devices.Parse(a.Option("--device") ?? Devices.Cpu);
        algorithm.CheckAvailable(a.Option("--path") ?? "reference", device);
        return (algorithm, algorithm.Bind(TensorFile.Read(input), parameters, input, device));
    }

    private static int RunAlgorithm(Arguments a, TextWriter stdout, TextWriter stderr)
    {
        var (algorithm, call) = Prepare(a, "run");
        var output = a.Required("--output");
        // Without --path: what check judges against (the reference, or an optimum certified exactly where the reference is
        // too slow, as for maxscore beyond N k * N E = 2^25); --path reference forces the readable reference.
        var path = a.Option("--path");
        var outputs = path is null ? algorithm.RunOracle(call) : algorithm.Run(call, path);
        WarnIfNotConverged(algorithm, outputs, stderr);
        TensorFile.Write(output, outputs);
        stdout.WriteLine($"{algorithm.Name}: wrote {string.Join(", ", outputs.Select(o => $"{o.Key} {o.Value.ShapeText} {o.Value.DType}"))} to {output}");
        return Pass;
    }

    private static int Check(Arguments a, TextWriter stdout, TextWriter stderr)
    {
        var (algorithm, call) = Prepare(a, "check");
        if (a.Option("--path") is { } path)
        {
            if (a.Option("--candidate") is not null)
            {
                throw new InputException("check takes --candidate FILE or --path PATH, not both");
            }
            if (path == "reference")
            {
                throw new InputException("check --path needs an optimized path (the reference is what it is judged against)");
            }
        }
        var (candidatePath, candidate) = a.Option("--path") is { } optimized
            ? ($"{optimized} output", algorithm.Run(call, optimized))
            : (a.Required("--candidate"), TensorFile.Read(a.Required("--candidate")));
        var expected = algorithm.RunOracle(call);
        WarnIfNotConverged(algorithm, expected, stderr);
        var reports = algorithm.Check(call, expected, candidate, candidatePath);
        foreach (var r in reports)
        {
            // The policy's own numbers (e.g. the baseline's base error, floor and bound) follow the summary; a failing
            // array then lists its first mismatches (index, got, expected, allowed).
            stdout.WriteLine(r.Detail is null ? r.Summary() : $"{r.Summary()} {r.Detail}");
            foreach (var line in r.MismatchLines())
            {
                stdout.WriteLine(line);
            }
        }
        var ignored = candidate.Keys.Where(n => algorithm.Outputs.All(o => o.Name != n)).ToList();
        if (ignored.Count > 0)
        {
            stdout.WriteLine($"note: ignored arrays that are not {algorithm.Name} outputs: {string.Join(", ", ignored)}");
        }
        bool passed = reports.All(r => r.Passed);
        if (a.Option("--json") is { } jsonPath)
        {
            var doc = new
            {
                status = passed ? "pass" : "fail",
                algorithm = algorithm.Name,
                input = call.Source,
                candidate = candidatePath,
                parameters = call.Parameters.AsText,
                passed,
                outputs = reports.Select(ReportJson),
            };
            File.WriteAllText(jsonPath, JsonSerializer.Serialize(doc, Json));
        }
        if (a.Option("--html") is { } htmlPath)
        {
            HtmlReport.Check(htmlPath, new CheckData(algorithm, call, expected, candidate, candidatePath, reports));
        }
        return passed ? Pass : Mismatch;
    }

    private static int SelfCheckCommand(Arguments a, TextWriter stdout, TextWriter stderr)
    {
        int seed = a.IntOption("--seed", 1);
        int cases = a.IntOption("--cases", 50);
        if (cases < 0)
        {
            throw new InputException($"option '--cases' = {cases} must be >= 0");
        }
        var dataRoot = a.Option("--data")
            ?? GoldenData.Locate(Directory.GetCurrentDirectory())
            ?? GoldenData.Locate(AppContext.BaseDirectory);
        if (dataRoot is null)
        {
            stderr.WriteLine("reference: warning: no data/golden directory found (use --data DIR); golden cases are skipped");
        }
        else if (!Directory.Exists(Path.Combine(dataRoot, "golden")))
        {
            throw new InputException($"{dataRoot}: holds no golden/ directory");
        }
        var algorithms = AlgorithmRegistry.All.AsEnumerable();
        if (a.Option("--only") is { } only)
        {
            var found = AlgorithmRegistry.Find(only) ?? throw new InputException($"unknown algorithm '{only}'");
            algorithms = [found];
        }
        var onlyPath = a.Option("--path");
        var device = Devices.Parse(a.Option("--device") ?? Devices.Cpu);
        if (onlyPath is not null && !algorithms.Any(x => x.PathNames.Contains(onlyPath)))
        {
            throw new InputException($"no algorithm has a path '{onlyPath}'; paths: {string.Join(", ", AlgorithmRegistry.All.SelectMany(x => x.PathNames).Distinct())}");
        }
        var rows = SelfCheck.Run(
            algorithms, dataRoot is null ? null : new GoldenData(dataRoot), seed, cases,
            line => stderr.WriteLine($"selfcheck: {line}"), onlyPath, device);
        if (rows.Count == 0)
        {
            throw new InputException($"no path runs on --device {device}{(onlyPath is null ? "" : $" with --path {onlyPath}")}");
        }

        stdout.WriteLine(Table(rows));
        foreach (var row in rows.Where(r => r.FirstFailure is not null))
        {
            stdout.WriteLine($"first failure, {row.Algorithm}/{row.Path}: {row.FirstFailure}");
        }
        bool passed = rows.All(r => r.Verdict == "PASS");
        stdout.WriteLine(passed ? $"selfcheck: all {rows.Count} rows pass" : $"selfcheck: {rows.Count(r => r.Verdict != "PASS")} of {rows.Count} rows fail");
        if (a.Option("--json") is { } jsonPath)
        {
            File.WriteAllText(jsonPath, JsonSerializer.Serialize(new { seed, cases, passed, rows }, Json));
        }
        if (a.Option("--html") is { } htmlPath)
        {
            HtmlReport.SelfCheck(htmlPath, rows, seed, cases);
        }
        return passed ? Pass : Mismatch;
    }

    /// <summary>
    /// <c>reference flow --dimacs FILE [--solver reference|ortools|lemon]</c>: solves a DIMACS min-cost-flow file with the
    /// reference solver (default), OR-Tools' SimpleMinCostFlow or LEMON's network simplex, and prints
    /// <c>s COST</c> and <c>f SRC DST FLOW</c> lines (exit 0); an infeasible or unbalanced instance prints
    /// <c>s infeasible</c> or <c>s unbalanced</c> and exits 1; a malformed file or costs out of range exit 2.
    /// </summary>
    private static int FlowCommand(Arguments a, TextWriter stdout)
    {
        var path = a.Option("--dimacs") ?? (a.Positional.Count == 1 ? a.Positional[0] : null)
            ?? throw new InputException("flow needs --dimacs FILE");
        if (!File.Exists(path))
        {
            throw new InputException($"{path}: file not found");
        }
        DimacsProblem problem;
        try
        {
            problem = Dimacs.Parse(File.ReadAllText(path));
        }
        catch (FormatException ex)
        {
            throw new InputException($"{path}: {ex.Message}", ex);
        }
        FlowSolver solver;
        try
        {
            solver = FlowSolvers.Parse(a.Option("--solver") ?? "reference");
        }
        catch (ArgumentException ex)
        {
            throw new InputException(ex.Message, ex);
        }
        DimacsSolution solution;
        try
        {
            solution = Dimacs.SolveDimacs(problem, flow => FlowSolvers.Solve(solver, flow));
        }
        catch (InvalidOperationException ex) when (solver != FlowSolver.Reference)
        {
            throw new InputException($"{path}: {ex.Message}", ex);
        }
        switch (solution.Status)
        {
            case MinCostFlowStatus.Optimal:
                stdout.Write(Dimacs.FormatSolution(problem, solution));
                return Pass;
            case MinCostFlowStatus.Infeasible:
            case MinCostFlowStatus.Unbalanced:
                stdout.WriteLine($"s {Dimacs.StatusWord(solution.Status).ToLowerInvariant()}");
                return Mismatch;
            default:
                throw new InputException($"{path}: {Dimacs.StatusWord(solution.Status).ToLowerInvariant().Replace('_', ' ')}");
        }
    }

    /// <summary>
    /// <c>reference bench maxscore</c>: median solve times of the MaxScore solvers on identical skewed-router instances,
    /// with objectives and time ratios against the fast solver. Data, not a pass/fail test: it exits 0 unless an
    /// exact solver's objective disagrees with the fast solver's (then 1).
    /// </summary>
    private static int BenchCommand(Arguments a, TextWriter stdout, TextWriter stderr)
    {
        if (a.Positional.Count >= 1 && a.Positional[0] == "table")
        {
            return BenchTable(a.Positional.Skip(1).ToList(), stdout, a.Option("--html"));
        }
        if (a.Positional.Count == 1 && BenchRegistry.Find(a.Positional[0]) is { } bench)
        {
            return RegisteredBench(bench, a, stdout, stderr);
        }
        if (a.Positional.Count != 1 || a.Positional[0] != "maxscore")
        {
            throw new InputException(
                $"bench takes one benchmark ({string.Join(", ", BenchRegistry.All.Select(b => b.Name).Prepend("maxscore"))}), or 'table' and benchmark records");
        }
        var sizes = a.Option("--size") is { } sizeText
            ? sizeText.Split(',').Select(t =>
            {
                try
                {
                    return BenchSize.Parse(t.Trim());
                }
                catch (FormatException ex)
                {
                    throw new InputException($"option '--size': {ex.Message}", ex);
                }
            }).ToList()
            : MaxScoreBench.DefaultSizes.ToList();
        int repeats = a.IntOption("--repeats", 5);
        if (repeats < 1)
        {
            throw new InputException($"option '--repeats' = {repeats} must be >= 1");
        }
        var rows = MaxScoreBench.Run(sizes, MaxScoreBench.Solvers, repeats, a.IntOption("--seed", 1), line => stderr.WriteLine($"bench: {line}"));
        bool agree = true;
        foreach (var row in rows)
        {
            var fast = row.Timings.First(t => t.Solver == MaxScoreBench.Fast.Name);
            stdout.WriteLine($"size {row.Size} (C = {row.Size.Capacity})");
            foreach (var t in row.Timings)
            {
                string time = double.IsNaN(t.MedianMilliseconds) ? "n/a" : t.MedianMilliseconds.ToString("0.000", CultureInfo.InvariantCulture) + " ms";
                string ratio = double.IsNaN(t.MedianMilliseconds) || t == fast ? "" : $"  {t.MedianMilliseconds / fast.MedianMilliseconds:0.0}x the fast solver's time";
                string objective = double.IsNaN(t.Objective) ? "" : $"  objective {t.Objective.ToString("R", CultureInfo.InvariantCulture)}";
                string runs = double.IsNaN(t.MedianMilliseconds) ? "" : $" median of {t.Repeats,4}";
                stdout.WriteLine($"  {t.Solver,-24} {time,14}{runs}{objective}{ratio}{(t.Note is null ? "" : "  (" + t.Note + ")")}");
                if (t.Exact && !double.IsNaN(t.Objective) && Math.Abs(t.Objective - fast.Objective) > 1e-9 * Math.Max(1, Math.Abs(fast.Objective)))
                {
                    agree = false;
                    stdout.WriteLine($"  MISMATCH: {t.Solver}'s objective differs from the fast solver's");
                }
            }
        }
        if (a.Option("--json") is { } jsonPath)
        {
            File.WriteAllText(jsonPath, BenchRecord.FromMaxScore(rows, BenchMachine.Current()).ToJson());
        }
        if (a.Option("--html") is { } htmlPath)
        {
            HtmlReport.Bench(htmlPath, [BenchRecord.FromMaxScore(rows, BenchMachine.Current())]);
        }
        return agree ? Pass : Mismatch;
    }

    /// <summary><c>reference bench table RECORD.json...</c>: the records' Markdown table (README's timing table is this
    /// table of data/bench/*.json).</summary>
    /// <summary><c>reference bench NAME</c> for a registered benchmark: runs it, prints per size each solver's median,
    /// runs, GFLOP/s and time as a multiple of the first solver's, and writes the record with <c>--json</c>.</summary>
    private static int RegisteredBench(IBench bench, Arguments a, TextWriter stdout, TextWriter stderr)
    {
        int repeats = a.IntOption("--repeats", 5);
        if (repeats < 1)
        {
            throw new InputException($"option '--repeats' = {repeats} must be >= 1");
        }
        var sizes = a.Option("--size") is { } sizeText ? sizeText.Split(',').Select(t => t.Trim()).ToList() : [];
        var record = bench.Run(new BenchRequest(sizes, repeats, a.IntOption("--seed", 1), line => stderr.WriteLine($"bench: {line}")));
        foreach (var group in record.Cases.GroupBy(c => c.Size))
        {
            stdout.WriteLine($"size {group.Key}");
            double? first = group.First().MedianMs;
            foreach (var c in group)
            {
                string time = c.MedianMs is { } ms ? ms.ToString("0.000", CultureInfo.InvariantCulture) + " ms" : "n/a";
                string runs = c.MedianMs is null ? "" : $" median of {c.Runs,4}";
                string gflops = c.Gflops is { } g ? $"  {g.ToString("0.0", CultureInfo.InvariantCulture)} GFLOP/s" : "";
                string ratio = c.MedianMs is { } m && first is { } f && f > 0 && c != group.First()
                    ? $"  {(m / f).ToString("0.00", CultureInfo.InvariantCulture)}x {group.First().Solver}'s time"
                    : "";
                stdout.WriteLine($"  {c.Solver,-28} {time,14}{runs}{gflops}{ratio}{(c.Note is null ? "" : "  (" + c.Note + ")")}");
            }
        }
        if (a.Option("--json") is { } jsonPath)
        {
            File.WriteAllText(jsonPath, record.ToJson());
        }
        if (a.Option("--html") is { } htmlPath)
        {
            HtmlReport.Bench(htmlPath, [record]);
        }
        if (bench.Disagreement(record) is { } disagreement)
        {
            stdout.WriteLine($"MISMATCH: {disagreement}");
            return Mismatch;
        }
        return Pass;
    }

    private static int BenchTable(IReadOnlyList<string> paths, TextWriter stdout, string? htmlPath)
    {
        if (paths.Count == 0)
        {
            throw new InputException("bench table needs at least one benchmark record (e.g. data/bench/*.json)");
        }
        var records = paths.Select(path =>
        {
            try
            {
                return BenchRecord.Read(path);
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                throw new InputException(ex.Message, ex);
            }
        }).ToList();
        stdout.Write(BenchRecord.Table(records));
        if (htmlPath is not null)
        {
            HtmlReport.Bench(htmlPath, records);
        }
        return Pass;
    }

    /// <summary>
    /// Iterative algorithms report convergence in their outputs (a 0-d bool <c>converged</c>, and optionally
    /// <c>iterations</c>, <c>err</c> and a <c>status</c> code); the CLI repeats a failure on stderr so that it is never silent.
    /// </summary>
    private static void WarnIfNotConverged(Algorithm algorithm, IReadOnlyDictionary<string, NdArray> outputs, TextWriter stderr)
    {
        if (!outputs.TryGetValue("converged", out var converged) || converged.Length != 1 || converged.GetDouble(0) != 0)
        {
            return;
        }
        string Scalar(string name) => outputs.TryGetValue(name, out var x) && x.Length == 1
            ? x.GetDouble(0).ToString("R", CultureInfo.InvariantCulture) : "?";
        string status = outputs.TryGetValue("status", out var s) && s.Length == 1 && s.GetDouble(0) == 2 ? "numerical error" : "not converged";
        stderr.WriteLine($"reference: warning: {algorithm.Name} {status} (iterations={Scalar("iterations")}, err={Scalar("err")})");
    }

    /// <summary>The selfcheck table: algorithm, path, cases, verdict, worst error, worst margin (error / bound).</summary>
    public static string Table(IReadOnlyList<SelfCheckRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var cells = new List<string[]> { new[] { "algorithm", "path", "cases", "verdict", "worst error", "worst margin" } };
        cells.AddRange(rows.Select(r => new[]
        {
            r.Algorithm, r.Path, r.Cases.ToString(CultureInfo.InvariantCulture),
            r.Failures == 0 ? r.Verdict : $"{r.Verdict} ({r.Failures})",
            r.WorstError.ToString("0.###e+00", CultureInfo.InvariantCulture),
            r.WorstMargin is { } m ? m.ToString("G3", CultureInfo.InvariantCulture) : "-",
        }));
        var widths = Enumerable.Range(0, 6).Select(c => cells.Max(row => row[c].Length)).ToArray();
        var lines = cells.Select(row => string.Join("  ", row.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd()).ToList();
        lines.Insert(1, string.Join("  ", widths.Select(w => new string('-', w))));
        return string.Join(Environment.NewLine, lines);
    }

    private static object ReportJson(ComparisonReport r) => new
    {
        array = r.ArrayName,
        policy = r.PolicyName,
        passed = r.Passed,
        problem = r.Problem,
        count = r.Count,
        mismatches = r.MismatchCount,
        nan_mismatches = r.NaNMismatches,
        inf_mismatches = r.InfMismatches,
        max_abs_error = r.IsIntegral ? (double?)null : r.MaxAbsError,
        max_rel_error = r.IsIntegral ? (double?)null : r.MaxRelError,
        margin = r.Margin,
        first_mismatches = r.FirstMismatches.Select(m => new { index = m.Index, flat_index = m.FlatIndex, got = m.Got, expected = m.Expected, allowed = m.Allowed }),
        detail = r.Detail,
    };

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
