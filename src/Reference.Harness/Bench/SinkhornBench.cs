using System.Diagnostics;
using System.Globalization;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Bench;

/// <summary>One Sinkhorn benchmark size: an N x E cost and T iterations.</summary>
/// <param name="Rows">N.</param>
/// <param name="Columns">E.</param>
/// <param name="Iterations">T: every solver runs exactly T iterations (tolerance 0 never stops them early).</param>
public sealed record SinkhornSize(int Rows, int Columns, int Iterations)
{
    /// <summary>"N/E/T".</summary>
    public override string ToString() => $"{Rows}/{Columns}/{Iterations}";

    /// <summary>Parses "N/E" (T = <see cref="SinkhornBench.DefaultIterations"/>) or "N/E/T".</summary>
    /// <exception cref="InputException">Not two or three positive integers.</exception>
    public static SinkhornSize Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('/');
        var values = parts.Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v >= 1 ? v : -1).ToArray();
        if (parts.Length is < 2 or > 3 || values.Any(v => v < 1) || (long)values[0] * values[1] > int.MaxValue)
        {
            throw new InputException($"option '--size': size '{text}' is not N/E or N/E/T (rows, columns, iterations) with positive integers");
        }
        return new SinkhornSize(values[0], values[1], parts.Length == 3 ? values[2] : SinkhornBench.DefaultIterations);
    }
}

/// <summary>
/// <c>reference bench sinkhorn</c>: log-domain Sinkhorn (proofs/sinkhorn.md, Definition: POT methods, method log) on the
/// same cost M = -X (X standard normal logits, float32, seeded), uniform marginals, reg = <see cref="Regularization"/>,
/// tolerance 0 and T iterations for every solver: POT 0.8.2's <c>ot.bregman.sinkhorn_log</c> run out of process by
/// /usr/bin/python3 (timed inside Python around the solve only; stopThr = 0, numItermax = T), the double reference, the
/// float32 <c>kernel</c>, and <c>torch</c> when registered. POT is the first solver, so the ratios are against it; every
/// case's note gives the time per iteration (the solve's time over T; both codes check the error on every 10th iteration).
/// </summary>
/// <remarks>
/// The solvers take turns (<see cref="Interleaved"/>): the Python process stays up and solves once per round on request.
/// Without Python or POT the POT solver carries a note and the others still run. The record fails (exit 1) when the
/// kernel's result does not pass <c>check</c> against the reference, or POT's final marginal error differs from the
/// reference's beyond rounding: both are the same double iteration.
/// </remarks>
public sealed class SinkhornBench : IBench
{
    /// <summary>T when a size does not give it.</summary>
    public const int DefaultIterations = 100;

    /// <summary>The entropic regularization of every solver.</summary>
    public const double Regularization = 0.1;

    /// <summary>The interpreter POT runs in (Debian's, with python3-pot).</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>The name of the POT solver.</summary>
    public const string PotSolver = "POT sinkhorn_log (out of process)";

    /// <summary>The note of a disagreement (what <see cref="Disagreement"/> looks for).</summary>
    public const string Disagrees = "DISAGREES";

    /// <summary>The sizes it runs without <c>--size</c>.</summary>
    public static IReadOnlyList<SinkhornSize> DefaultSizes { get; } =
        [new SinkhornSize(4096, 64, DefaultIterations), new SinkhornSize(1024, 16, DefaultIterations)];

    /// <inheritdoc />
    public string Name => "sinkhorn";

    /// <inheritdoc />
    public string Summary =>
        "log-domain Sinkhorn, reg 0.1, tol 0, T iterations: POT 0.8.2 sinkhorn_log out of process, reference (double), kernel (float32), torch when registered; sizes N/E[/T] (default 4096/64/100, 1024/16/100)";

    /// <inheritdoc />
    public BenchRecord Run(BenchRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var sizes = request.Sizes.Count == 0 ? DefaultSizes : request.Sizes.Select(SinkhornSize.Parse).ToList();
        var machine = BenchMachine.Current();
        var algorithm = AlgorithmRegistry.Find("sinkhorn") ?? throw new InvalidOperationException("sinkhorn is not registered");
        var cases = new List<BenchCase>();
        string dir = Path.Combine(Path.GetTempPath(), "reference-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            foreach (var size in sizes)
            {
                cases.AddRange(RunOne(algorithm, size, request, dir));
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
        var bad = record.Cases.Where(c => c.Note?.Contains(Disagrees, StringComparison.Ordinal) == true).Select(c => $"{c.Size} {c.Solver}").ToList();
        return bad.Count == 0 ? null : $"{string.Join(", ", bad)}: the result disagrees with the reference's (see the note)";
    }

    private static IEnumerable<BenchCase> RunOne(Algorithm algorithm, SinkhornSize size, BenchRequest request, string dir)
    {
        int n = size.Rows, e = size.Columns, t = size.Iterations;
        var logits = RoutingBench.Logits(new BenchSize(n, e, 1), request.Seed);
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(logits, n, e) };
        var parameters = new Dictionary<string, string>
        {
            ["method"] = "log",
            ["reg"] = Regularization.ToString("R", CultureInfo.InvariantCulture),
            ["max_iter"] = t.ToString(CultureInfo.InvariantCulture),
            ["tol"] = "0",
        };
        AlgorithmCall Bind() => algorithm.Bind(inputs, parameters, "bench");
        string label = size.ToString();

        // Untimed: the reference's result, and the kernel's judged against it.
        var referenceOutputs = algorithm.Run(Bind(), "reference");
        double referenceErr = referenceOutputs["err"].ToDoubles()[0];
        var notes = new Dictionary<string, string>(StringComparer.Ordinal);
        if (algorithm.Paths.Any(p => p.Name == "kernel"))
        {
            var call = Bind();
            var reports = algorithm.Check(call, referenceOutputs, algorithm.Run(call, "kernel"), "kernel output");
            if (!reports.All(r => r.Passed))
            {
                notes["kernel"] = $"{Disagrees}: the kernel's result fails check ({string.Join("; ", reports.Where(r => !r.Passed).Select(r => r.Summary()))})";
            }
        }

        var cost = new double[n * e];
        for (int i = 0; i < cost.Length; i++)
        {
            cost[i] = -(double)logits[i];
        }
        string costFile = Path.Combine(dir, $"cost-{label.Replace('/', 'x')}.npz");
        TensorFile.Write(costFile, new Dictionary<string, NdArray> { ["cost"] = NdArray.Create(cost, n, e) });
        using var pot = PotProcess.Start(costFile, Regularization, t, out string? potSkip);
        if (pot is not null)
        {
            double relative = Math.Abs(pot.Error - referenceErr) / Math.Max(Math.Abs(referenceErr), 1e-300);
            notes[PotSolver] = string.Create(CultureInfo.InvariantCulture, $"POT {pot.Version}, {pot.Iterations} iterations, final err {pot.Error:G6}")
                + (pot.Iterations != t || relative > 1e-6
                    ? string.Create(CultureInfo.InvariantCulture, $"; {Disagrees}: the reference ran {t} iterations to err {referenceErr:G6}")
                    : "");
        }

        var solvers = new List<TimedSolver>
        {
            new(PotSolver, () => pot!.Solve(), potSkip),
            new("reference (double)", () => Interleaved.Time(() => algorithm.Run(Bind(), "reference"))),
        };
        foreach (var path in algorithm.Paths.Where(p => p.Devices.Contains(Devices.Cpu)))
        {
            string? skip = path.Supports is { } supports && !supports(Bind()) ? $"skipped: {path.Name} does not support this call (its Supports rule)" : null;
            solvers.Add(new TimedSolver(path.Name == "kernel" ? "kernel (float32)" : path.Name, () => Interleaved.Time(() => algorithm.Run(Bind(), path.Name)), skip));
        }
        var results = Interleaved.Run(solvers, request.Repeats, solver => request.Progress($"{label}: {solver}"));
        double? potMs = results[0].MedianMs;
        foreach (var r in results)
        {
            string note = r.Describe();
            if (r.MedianMs is { } ms)
            {
                note += string.Create(CultureInfo.InvariantCulture, $"; {ms / t:0.####} ms per iteration");
                if (potMs is { } p && r != results[0])
                {
                    note += string.Create(CultureInfo.InvariantCulture, $"; {p / ms:0.0}x POT's speed per iteration");
                }
            }
            string key = r.Name == "kernel (float32)" ? "kernel" : r.Name;
            if (notes.TryGetValue(key, out string? extra))
            {
                note += "; " + extra;
            }
            yield return new BenchCase(label, r.Name, r.MedianMs, r.Runs, null, null, note);
        }
    }

    /// <summary>POT in a Python process that loads the cost once and solves on request, timing the solve itself.</summary>
    private sealed class PotProcess : IDisposable
    {
        private const string Script = """
            import sys, time, warnings
            import numpy as np
            try:
                import ot
                from ot.bregman import sinkhorn_log
            except Exception as ex:
                print("unavailable: " + repr(ex).replace("\n", " "), flush=True)
                sys.exit(0)
            path, reg, iters = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
            m = np.ascontiguousarray(np.load(path)["cost"], dtype=np.float64)
            n, e = m.shape
            a = np.full(n, 1.0 / n)
            b = np.full(e, 1.0 / e)
            warnings.simplefilter("ignore")
            plan, log = sinkhorn_log(a, b, m, reg, numItermax=iters, stopThr=0.0, log=True)
            print("ready %s %d %r" % (ot.__version__, log["niter"] + 1, float(np.linalg.norm(plan.sum(0) - b))), flush=True)
            for line in sys.stdin:
                if line.strip() != "run":
                    break
                t0 = time.perf_counter()
                sinkhorn_log(a, b, m, reg, numItermax=iters, stopThr=0.0)
                print(repr((time.perf_counter() - t0) * 1000.0), flush=True)
            """;

        private readonly Process process;

        private PotProcess(Process process, string version, int iterations, double error)
        {
            this.process = process;
            Version = version;
            Iterations = iterations;
            Error = error;
        }

        /// <summary>POT's version.</summary>
        public string Version { get; }

        /// <summary>The iterations POT ran (its niter + 1).</summary>
        public int Iterations { get; }

        /// <summary>||G^T 1 - b||_2 of POT's plan.</summary>
        public double Error { get; }

        /// <summary>Starts Python and runs the warm-up solve; null with the reason when Python or POT is missing.</summary>
        public static PotProcess? Start(string costFile, double reg, int iterations, out string? skip)
        {
            skip = null;
            if (!File.Exists(Python))
            {
                skip = $"not run: {Python} not found (POT runs out of process in Debian's Python with python3-pot)";
                return null;
            }
            var info = new ProcessStartInfo(Python)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string arg in new[] { "-c", Script, costFile, reg.ToString("R", CultureInfo.InvariantCulture), iterations.ToString(CultureInfo.InvariantCulture) })
            {
                info.ArgumentList.Add(arg);
            }
            var process = Process.Start(info) ?? throw new InvalidOperationException($"{Python} did not start");
            var stderr = process.StandardError.ReadToEndAsync();
            string? line = process.StandardOutput.ReadLine();
            var parts = line?.Split(' ');
            if (parts is not ["ready", var version, var niter, var err])
            {
                process.WaitForExit();
                string reason = line?.StartsWith("unavailable", StringComparison.Ordinal) == true ? line : $"Python failed: {stderr.Result.Trim().Split('\n')[^1]}";
                skip = $"not run: POT {reason}";
                process.Dispose();
                return null;
            }
            return new PotProcess(process, version, int.Parse(niter, CultureInfo.InvariantCulture), double.Parse(err, CultureInfo.InvariantCulture));
        }

        /// <summary>One solve; its time in ms as Python measured it.</summary>
        public double Solve()
        {
            process.StandardInput.WriteLine("run");
            process.StandardInput.Flush();
            string line = process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("the POT process ended");
            return double.Parse(line, CultureInfo.InvariantCulture);
        }

        public void Dispose()
        {
            try
            {
                process.StandardInput.WriteLine("quit");
                process.StandardInput.Close();
                if (!process.WaitForExit(10_000))
                {
                    process.Kill();
                }
            }
            catch (IOException)
            {
                // The process already ended.
            }
            process.Dispose();
        }
    }
}
