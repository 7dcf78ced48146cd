using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Numerics;
using Reference.Routing;
using Reference.Transport;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a Sinkhorn candidate (proofs/sinkhorn.md, theorem sinkhorn.kernel-equals-reference and the decisions there).
/// </summary>
/// <remarks>
/// <para>A candidate may run a different number of iterations than the reference: a float32 implementation cannot reach
/// tol = 1e-9 and runs to its cap, or stops at another check. So the candidate's floats are compared with the reference's
/// iterate after the candidate's own iteration count T (the reference rerun with max_iter = T and tol = 0, which
/// reproduces exactly that iterate), within the bound derived in the proof: per half-step
/// delta = u (6 S + 2 (N + E) + 8) with u the candidate's unit roundoff, |log G_c - log G_r| &lt;= 4 T delta + u (3 S + 4) and
/// |f_c - f_r| &lt;= reg 2 T delta + 2 u |f_r| (T counts inner iterations for eps-scaling). S, the size of the iterates'
/// potentials, is estimated from the reference's final potentials as max|M|/reg + 3 (max|f| + max|g|)/reg + max|log a| +
/// max|log b| + log(N E): for a run from 0, an order-preserving homogeneous iteration keeps every iterate within the
/// spread of its limit (proof of sinkhorn.variants-agree), which that estimate covers; the property test uses the exact
/// maximum over the run instead.</para>
/// <para>A double-precision candidate (for example a stored expected file) must follow the rules exactly: the same
/// iterations, status and converged as the reference. A lower-precision candidate must be consistent with itself:
/// status 0 only if its err meets the stopping rule and its iteration count is a check iteration; status 1 only at the
/// cap; status 2 only where the reference fails too. Its err must be the stopping measure of its own plan (recomputed
/// here in double). Experts may differ from the reference's only at ties within the plan bound; weights are then judged
/// at the candidate's experts.</para>
/// </remarks>
public sealed class SinkhornValidator : IValidator
{
    /// <summary>Validates every Sinkhorn output the candidate contains.</summary>
    /// <param name="context">The call, the reference's outputs and the candidate's.</param>
    /// <returns>One report per output the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var candidate = context.Candidate;
        var expected = context.Expected;
        // The precision the candidate is judged in: the least precise of its float arrays (a float32 plan next to a
        // double err is a float32 candidate), which is the context's decision format.
        var format = context.Format;
        var options = SinkhornAlgorithm.Options(call);
        var method = options.Method;
        var cost = SinkhornAlgorithm.Cost(call);
        int n = cost.GetLength(0), e = cost.GetLength(1);
        double u = Precision.UnitRoundoff(format);
        bool exactRules = format == NumberFormat.Float64;
        var reference = SinkhornAlgorithm.Solve(call, options);

        // 1. The iterate to compare with: the reference's after the candidate's own iteration count.
        int t = candidate.TryGetValue("iterations", out var it) ? (int)it.GetDouble(0) : reference.Iterations;
        var target = reference;
        if (!exactRules && t != reference.Iterations && t >= 1)
        {
            target = SinkhornAlgorithm.Solve(call, options with { MaxIterations = t, Tolerance = 0.0 });
        }

        // 2. The bound (see remarks): a posteriori from a float32 run for the methods whose iterates the float32 kernel
        //    reproduces, else the a-priori one with the computation's unit roundoff; then rounding to the carried format.
        double reg = method == SinkhornMethod.SBase ? 1.0 : options.Regularization ?? 1.0;
        var a = options.RowMarginal?.ToArray() ?? Enumerable.Repeat(1.0 / n, n).ToArray();
        var b = options.ColumnMarginal?.ToArray() ?? Enumerable.Repeat(1.0 / e, e).ToArray();
        var bounds = Bounds(call, options, method, cost, target, t, a, b, context.FormatOf("plan"),
            context.FormatOf("f") > context.FormatOf("g") ? context.FormatOf("f") : context.FormatOf("g"), exactRules ? format : NumberFormat.Float32,
            candidate.TryGetValue("plan", out var plan32) ? plan32.ToDoubles() : null);
        double logPlan = bounds.LogPlan;
        double floor = bounds.Floor;
        var planPolicy = bounds.Plan;
        var potentialPolicy = bounds.Potential;
        u = bounds.ComputeUnit;

        var reports = new List<ComparisonReport>();
        double[]? candidatePlan = candidate.TryGetValue("plan", out var cp) ? cp.ToDoubles() : null;
        if (candidatePlan is not null)
        {
            reports.Add(WithDetail(planPolicy.Compare("plan", candidatePlan, Flat(target.Plan), [n, e]), bounds.Detail));
        }
        if (candidate.TryGetValue("f", out var cf))
        {
            reports.Add(WithDetail(potentialPolicy.Compare("f", cf.ToDoubles(), target.F, [n]), bounds.Detail));
        }
        if (candidate.TryGetValue("g", out var cg))
        {
            reports.Add(WithDetail(potentialPolicy.Compare("g", cg.ToDoubles(), target.G, [e]), bounds.Detail));
        }

        // 3. err: the stopping measure of the candidate's own plan (or the target's err when it sent no plan).
        double? candidateErr = candidate.TryGetValue("err", out var ce) ? ce.GetDouble(0) : null;
        double mass = Math.Max(a.Sum(), b.Sum());
        double uErr = exactRules ? 0.0 : Precision.UnitRoundoff(context.FormatOf("err")); // rounding the result
        if (candidateErr is { } errValue)
        {
            double want;
            TolerancePolicy policy;
            if (method == SinkhornMethod.SBase || candidatePlan is null)
            {
                // S-BASE's err is a change of scalings, not a function of the plan.
                want = target.Error;
                double scaleOfD1 = target.G.Length == 0 || !AllFinite(target.G) ? 1.0 : Math.Exp(target.G.Max());
                policy = new AllClosePolicy(Math.Min(2.0 * double.ExpM1(logPlan) * Math.Max(mass, scaleOfD1), 1e300), 4.0 * u + uErr);
            }
            else
            {
                want = Measure(method, candidatePlan, a, b);
                // The candidate sums N or E terms in its precision, then squares and adds E of them.
                double slack = 4.0 * (n + e) * u * mass;
                // (A NaN plan gives a NaN measure, which only a NaN err matches.)
                policy = new AllClosePolicy(double.IsFinite(want) ? slack * (1.0 + 2.0 * want) : slack, 4.0 * (n + e) * u + uErr);
            }
            reports.Add(policy.Compare("err", [errValue], [want], []));
        }

        // 4. iterations, status, converged.
        int cap = method == SinkhornMethod.EpsilonScaling
            ? Math.Max(35, options.MaxIterations ?? 1000)
            : options.MaxIterations ?? (method == SinkhornMethod.SBase ? 10000 : 1000);
        double tol = options.Tolerance ?? (method == SinkhornMethod.SBase ? 1e-4 : 1e-9);
        int? candidateStatus = candidate.TryGetValue("status", out var cs) ? (int)cs.GetDouble(0)
            : candidate.TryGetValue("converged", out var cc) ? (cc.GetDouble(0) != 0 ? 0 : (t == cap ? 1 : 2)) : null;
        double errForRule = candidateErr ?? (candidatePlan is null ? target.Error : Measure(method, candidatePlan, a, b));
        int expectedStatus = (int)reference.Status;
        int expectedIterations = reference.Iterations;
        if (!exactRules && candidateStatus is { } st)
        {
            // The status the candidate's own state implies (its iteration count and err); -1 when none is possible.
            int implied = st == 2
                ? (reference.Status == SinkhornStatus.NumericalError ? 2 : -1)
                : Implied(method, t, cap, errForRule, tol, st);
            if (implied >= 0)
            {
                expectedStatus = implied;
                expectedIterations = t;
            }
        }
        if (candidate.TryGetValue("iterations", out var ci))
        {
            reports.Add(new ExactPolicy().Compare("iterations", [ci.GetDouble(0)], [expectedIterations], []));
        }
        if (candidate.TryGetValue("status", out var cst))
        {
            reports.Add(new ExactPolicy().Compare("status", [cst.GetDouble(0)], [expectedStatus], []));
        }
        if (candidate.TryGetValue("converged", out var ccv))
        {
            reports.Add(new ExactPolicy().Compare("converged", [ccv.GetDouble(0)], [expectedStatus == 0 ? 1.0 : 0.0], []));
        }

        // 5. experts and weights (S-BASE, SSR): a different choice passes only at a tie within the plan bound.
        if (target.Experts is { } targetExperts && expected.ContainsKey("experts"))
        {
            int k = targetExperts.GetLength(1);
            var accepted = Accept(candidate.TryGetValue("experts", out var cx) ? cx.ToDoubles() : null, target, double.ExpM1(logPlan), floor);
            if (cx is not null)
            {
                reports.Add(new ExactPolicy().Compare("experts", cx.ToDoubles(), accepted.Select(x => (double)x).ToArray(), [n, k]));
            }
            if (candidate.TryGetValue("weights", out var cw))
            {
                var want = ExpectedWeights(method, cost, target.Plan, accepted, n, e, k);
                var policy = method == SinkhornMethod.SBase
                    ? AllClosePolicy.For(format)
                    : new AllClosePolicy(floor, Math.Min(2.0 * double.ExpM1(logPlan) + 2.0 * k * u
                        + (exactRules ? 0.0 : Precision.UnitRoundoff(context.FormatOf("weights"))), 1e300));
                reports.Add(policy.Compare("weights", cw.ToDoubles(), want, [n, k]));
            }
        }

        // 6. On failure only: does the candidate match a nearby run (one iteration fewer or more, or the error tested
        //    every iteration)? Then say so in the failing reports' detail.
        if (reports.Any(r => !r.Passed))
        {
            string? hint = Diagnose(call, options, method, reference, tol, candidate, candidatePlan, planPolicy, n, e);
            if (hint is not null)
            {
                reports = reports.Select(r => r.Passed ? r : r with { Detail = r.Detail is null ? hint : $"{r.Detail}; {hint}" }).ToList();
            }
        }
        return reports;
    }

    /// <summary>How many times the float32 baseline run's deviation a candidate's iterates may have (proofs/sinkhorn.md,
    /// theorem sinkhorn.running-bound-fair: three independent float32 orders pass under it on every generated case; on 60
    /// measured cases they needed at most 0.74 of it in float32, so 4 is about five times what they need).</summary>
    public const double BaselineFactor = 4.0;

    /// <summary>The tolerances for one candidate (see <see cref="Bounds"/>).</summary>
    private sealed record PlanBounds(AllClosePolicy Plan, AllClosePolicy Potential, double LogPlan, double Floor, double ComputeUnit, string Detail);

    /// <summary>
    /// The bounds on the plan (relative, through |log G_c - log G_r|) and the potentials (absolute). A float64 candidate:
    /// the a-priori bound of the proof, per half-step delta = u (6 S + 2 (N + E) + 8), linear in the iterations. A
    /// lower-precision one is modelled as torch computes it: float32 iterations, the outputs rounded to the format they
    /// carry. For knopp, log and stabilized (the same iterates in exact arithmetic) the float32 error is measured a
    /// posteriori: the float32 log-domain kernel run for the same T iterations deviates from the double target by e_log
    /// in log G and e_pot in the potentials; the candidate may deviate by <see cref="BaselineFactor"/> times that plus the
    /// non-iterated roundings (M/reg, the final exp: 4 u32 S in log G; 4 u32 (max|f| + max|g| + reg S) in f, g), then
    /// rounding to its format (u_v relative). Other methods: the a-priori bound with u32, then the same rounding.
    /// </summary>
    private static PlanBounds Bounds(AlgorithmCall call, SinkhornOptions options, SinkhornMethod method, double[,] cost,
        SinkhornResult target, int t, double[] a, double[] b, NumberFormat planFormat, NumberFormat potentialFormat,
        NumberFormat compute, double[]? candidatePlan)
    {
        int n = cost.GetLength(0), e = cost.GetLength(1);
        double reg = method == SinkhornMethod.SBase ? 1.0 : options.Regularization ?? 1.0;
        double u = Precision.UnitRoundoff(compute);
        double s = MaxAbs(cost) / reg + 3.0 * (MaxAbs(target.F) + MaxAbs(target.G)) / reg
            + MaxAbs(a.Select(x => Math.Log(x))) + MaxAbs(b.Select(x => Math.Log(x))) + Math.Log((double)n * e);
        if (!double.IsFinite(s))
        {
            s = 0; // a NaN (failed) target: only NaN matches NaN, whatever the tolerance
        }
        long work = (long)Math.Max(1, t) * (method == SinkhornMethod.EpsilonScaling ? options.InnerMaxIterations : 1);
        double delta = u * (6.0 * s + 2.0 * (n + e) + 8.0);
        double potential = reg * 2.0 * work * delta;
        double logPlan = 4.0 * work * delta + u * (3.0 * s + 4.0);
        string how = $"a-priori bound over {work} iterations, u={ComparisonReport.Number(u)}";
        if (compute != NumberFormat.Float64 && method is SinkhornMethod.Knopp or SinkhornMethod.Log or SinkhornMethod.Stabilized
            && target.Status != SinkhornStatus.NumericalError && t >= 1 && AllFinite(target.F) && AllFinite(target.G))
        {
            var measured = Baseline(call, options, cost, target, t);
            if (measured is { } m)
            {
                double fixedLog = 4.0 * u * s;
                double fixedPotential = 4.0 * u * (MaxAbs(target.F) + MaxAbs(target.G) + reg * s);
                if (method == SinkhornMethod.Stabilized)
                {
                    // The drift along the gauge direction that the fit removed: a random walk of T steps of at most
                    // u (max|f| + max|g|) each, bounded with lambda = 7 (Higham and Mary 2019).
                    fixedPotential += 7.0 * Math.Sqrt(t) * u * (MaxAbs(target.F) + MaxAbs(target.G));
                }
                // Sums of N (E) terms in another order than the kernel's blocked one: Higham-Mary lambda sqrt(N - 1) u per
                // log-sum-exp (lambda = 7); in log G once per half-step pair, in the potentials as a random walk over T.
                double sums = 7.0 * (Math.Sqrt(n - 1) + Math.Sqrt(e - 1)) * u;
                fixedLog += 2.0 * sums;
                fixedPotential += reg * sums * Math.Sqrt(t);
                logPlan = BaselineFactor * m.LogPlan + fixedLog;
                potential = BaselineFactor * m.Potential + fixedPotential;
                how = $"float32 run of {t} iterations deviates {ComparisonReport.Number(m.LogPlan)} in log G, "
                      + $"{ComparisonReport.Number(m.Potential)} in f, g; allowed {BaselineFactor} x that + fixed roundings";
            }
        }
        double uPlan = Precision.UnitRoundoff(planFormat), uPotential = Precision.UnitRoundoff(potentialFormat);
        double floor = 2.0 * uPlan * Precision.SmallestNormal(planFormat) + 2.0 * Precision.SmallestNormal(compute);
        if (candidatePlan is not null && planFormat != NumberFormat.Float16 && compute != NumberFormat.Float64
            && candidatePlan.All(v => Precision.Round(v, NumberFormat.Float16) == v || double.IsNaN(v)))
        {
            // A float16 plan whose values are all subnormal or short also fits bfloat16: it may have underflowed in float16.
            floor = Math.Max(floor, 2.0 * Precision.UnitRoundoff(NumberFormat.Float16) * Precision.SmallestNormal(NumberFormat.Float16));
        }
        double relative = Math.Min(double.ExpM1(logPlan), 1e300);
        var plan = new AllClosePolicy(floor, Math.Min(relative + uPlan * (1.0 + relative), 1e300));
        double potentialFloor = 2.0 * uPotential * Precision.SmallestNormal(potentialFormat);
        var potentials = new AllClosePolicy(Math.Min(potential, 1e300) + potentialFloor, uPotential + 2.0 * u);
        return new PlanBounds(plan, potentials, logPlan, floor, u, how);
    }

    /// <summary>The float32 log-domain kernel's deviation from the double target after the same iterations: max |log G|
    /// difference over entries both represent as normal float32 numbers, and max potential difference. Null when the
    /// kernel fails.</summary>
    private static (double LogPlan, double Potential)? Baseline(AlgorithmCall call, SinkhornOptions options, double[,] cost,
        SinkhornResult target, int t)
    {
        int n = cost.GetLength(0), e = cost.GetLength(1);
        var flat = new float[n * e];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                flat[i * e + j] = (float)cost[i, j];
            }
        }
        Reference.Kernels.Transport.SinkhornKernelResult run;
        try
        {
            run = Reference.Kernels.Transport.Sinkhorn.Solve(flat, n, e,
                options with { Method = SinkhornMethod.Log, MaxIterations = t, Tolerance = 0.0 });
        }
        catch (ArgumentException)
        {
            return null;
        }
        if (run.Status == SinkhornStatus.NumericalError)
        {
            return null;
        }
        // The kernel starts from u = 1 (f = 0); knopp and stabilized start from u = 1/N, v = 1/E, and stabilized resets
        // them so at each absorption: the same plan, potentials shifted by a constant c (f + c, g - c). Knopp's c is
        // reg log(1/N) exactly; stabilized's is fitted (least squares), and the float32 drift along that direction,
        // which the fit hides, is allowed separately (see Bounds).
        double reg = options.Regularization ?? 1.0, shift = 0.0;
        if (options.Method == SinkhornMethod.Knopp)
        {
            shift = reg * Math.Log(1.0 / n);
        }
        else if (options.Method == SinkhornMethod.Stabilized)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
            {
                sum += target.F[i] - run.F[i];
            }
            for (int j = 0; j < e; j++)
            {
                sum -= target.G[j] - run.G[j];
            }
            shift = sum / (n + e);
        }
        double tiny = Precision.SmallestNormal(NumberFormat.Float32), potential = 0;
        double logPlan = RowsMax(n, i =>
        {
            double m = 0;
            for (int j = 0; j < e; j++)
            {
                double c = run.Plan[i * e + j], r = target.Plan[i, j];
                if (c > tiny && r > tiny)
                {
                    m = Math.Max(m, Math.Abs(Math.Log(c) - Math.Log(r)));
                }
            }
            return m;
        });
        for (int i = 0; i < n; i++)
        {
            potential = Math.Max(potential, Math.Abs(run.F[i] + shift - target.F[i]));
        }
        for (int j = 0; j < e; j++)
        {
            potential = Math.Max(potential, Math.Abs(run.G[j] - shift - target.G[j]));
        }
        // The sensitivity of the iterate to rounding: the double method rerun with every cost entry moved by
        // +-8 u32 (|M_ij| + max|f| + max|g|), a persistent perturbation of the size of the roundings of one iteration at
        // that scale (each half-step of a log-domain update rounds about four times there: the sum f + M, the division
        // by reg, the log-sum-exp and the product by reg; two half-steps move the plan); its response bounds what the
        // per-step roundings of another order accumulate. With one rounding's size (u32) a correct float32 order
        // (unscaled potentials, sequential sums) deviated 15 times the response on a 2 x 2 case, max|M|/reg = 30,
        // T = 300 (proofs/sinkhorn.md, theorem sinkhorn.running-bound-fair). Two sign patterns: a fixed
        // hash, and the checkerboard (-1)^(i+j). A pattern of the form r_i + c_j only moves the potentials (the plan is
        // invariant under it), and the hash is of that form on small problems (on 2 x 2 it is a column pattern), where
        // it alone measured no sensitivity of the plan at all; the checkerboard is never of that form when N, E >= 2.
        double u32 = Precision.UnitRoundoff(NumberFormat.Float32);
        double potentialScale = MaxAbs(target.F) + MaxAbs(target.G);
        foreach (Func<int, int, bool> positive in new Func<int, int, bool>[]
                 {
                     (i, j) => (unchecked((i * 73856093) ^ (j * 19349663)) >> 7 & 1) == 0,
                     (i, j) => ((i + j) & 1) == 0,
                 })
        {
            var moved = new double[n, e];
            Parallel.For(0, n, i =>
            {
                for (int j = 0; j < e; j++)
                {
                    moved[i, j] = cost[i, j] + (positive(i, j) ? 8.0 : -8.0) * u32 * (Math.Abs(cost[i, j]) + potentialScale);
                }
            });
            var sensitive = SinkhornAlgorithm.SolveCost(moved, options with { MaxIterations = t, Tolerance = 0.0 });
            if (sensitive.Status == SinkhornStatus.NumericalError)
            {
                continue;
            }
            logPlan = Math.Max(logPlan, RowsMax(n, i =>
            {
                double m = 0;
                for (int j = 0; j < e; j++)
                {
                    double c = sensitive.Plan[i, j], r = target.Plan[i, j];
                    if (c > tiny && r > tiny)
                    {
                        m = Math.Max(m, Math.Abs(Math.Log(c) - Math.Log(r)));
                    }
                }
                return m;
            }));
            for (int i = 0; i < n; i++)
            {
                potential = Math.Max(potential, Math.Abs(sensitive.F[i] - target.F[i]));
            }
            for (int j = 0; j < e; j++)
            {
                potential = Math.Max(potential, Math.Abs(sensitive.G[j] - target.G[j]));
            }
        }
        return double.IsFinite(logPlan) && double.IsFinite(potential) ? (logPlan, potential) : null;
    }

    /// <summary>
    /// The hint for a failing candidate: the nearby runs it matches, or null. The runs are the reference with one
    /// iteration fewer and one more (max_iter = R -/+ 1, tol = 0), and, for the methods that test the error every
    /// 10th (20th for stabilized) iteration, the run that stops at the first iteration whose error meets tol (what an
    /// implementation testing every iteration returns). A candidate matches a run when its iteration count (if it sent
    /// one) equals the run's and its plan (if it sent one) is within the plan bound of the run's plan.
    /// </summary>
    private static string? Diagnose(AlgorithmCall call, SinkhornOptions options, SinkhornMethod method, SinkhornResult reference,
        double tol, IReadOnlyDictionary<string, NdArray> candidate, double[]? candidatePlan, AllClosePolicy planPolicy, int n, int e)
    {
        bool hasIterations = candidate.TryGetValue("iterations", out var ci);
        if (!hasIterations && candidatePlan is null)
        {
            return null;
        }
        int r = reference.Iterations;
        bool Matches(SinkhornResult run) =>
            run.Status != SinkhornStatus.NumericalError
            && (!hasIterations || ci!.GetDouble(0) == run.Iterations)
            && (candidatePlan is null || planPolicy.Compare("plan", candidatePlan, Flat(run.Plan), [n, e]).Passed);
        SinkhornResult Run(int iterations) => SinkhornAlgorithm.Solve(call, options with { MaxIterations = iterations, Tolerance = 0.0 });

        var hints = new List<string>();
        int period = method switch
        {
            SinkhornMethod.Stabilized => 20,
            SinkhornMethod.Knopp or SinkhornMethod.Log or SinkhornMethod.Selective => 10,
            _ => 0,
        };
        if (period > 0 && reference.Status == SinkhornStatus.Converged)
        {
            // The first iteration before R whose error meets the rule (the error only shrinks near convergence, so it
            // lies among the last period - 1 iterations before the check that stopped the reference).
            for (int t = Math.Max(1, r - period + 1); t < r; t++)
            {
                var run = Run(t);
                if (MeetsRule(method, run.Error, tol))
                {
                    if (Matches(run))
                    {
                        hints.Add($"candidate matches the run that tests the error every iteration (stopping after {t} iterations); "
                                  + $"the reference, like POT, tests it every {period}th iteration, after iterations 1, {period + 1}, {2 * period + 1}, ... (POT's ii % {period} == 0, including ii = 0)");
                    }
                    break;
                }
            }
        }
        if (r >= 2 && Matches(Run(r - 1)))
        {
            hints.Add($"candidate matches {r - 1} iterations, 1 iteration fewer than the reference's {r}: an off-by-one in the iteration count?");
        }
        if (Matches(Run(r + 1)))
        {
            hints.Add($"candidate matches {r + 1} iterations, 1 iteration more than the reference's {r}: an off-by-one in the iteration count?");
        }
        return hints.Count == 0 ? null : "hint: " + string.Join("; or ", hints);
    }

    /// <summary>The stopping measure of a plan: ||G^T 1 - b||_2, or for eps-scaling ||G^T 1 - b||^2 + ||G 1 - a||^2.
    /// Each column is summed over the rows in order (one accumulator per column, the plan read row by row).</summary>
    private static double Measure(SinkhornMethod method, double[] plan, double[] a, double[] b)
    {
        int n = a.Length, e = b.Length;
        double column = 0, row = 0;
        var sums = new double[e];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                sums[j] += plan[i * e + j];
            }
        }
        for (int j = 0; j < e; j++)
        {
            double sum = sums[j];
            column += (sum - b[j]) * (sum - b[j]);
        }
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int j = 0; j < e; j++)
            {
                sum += plan[i * e + j];
            }
            row += (sum - a[i]) * (sum - a[i]);
        }
        return method == SinkhornMethod.EpsilonScaling ? column + row : Math.Sqrt(column);
    }

    /// <summary>
    /// The status a run must report after <paramref name="t"/> iterations with final stopping measure
    /// <paramref name="err"/>: 0 if it stopped by the rule (a check iteration whose measure meets it), 1 at the cap
    /// otherwise, -1 when neither is possible (it stopped early without meeting the rule). For eps-scaling at the cap with
    /// err &lt;= tol the stored error POT tests is not visible, so the candidate's own claim is taken.
    /// </summary>
    private static int Implied(SinkhornMethod method, int t, int cap, double err, double tol, int claimed)
    {
        switch (method)
        {
            case SinkhornMethod.SBase:
                return err <= tol ? 0 : t == cap ? 1 : -1;
            case SinkhornMethod.EpsilonScaling:
                if (t == cap)
                {
                    return err <= tol ? claimed : 1;
                }
                return t - 1 > 35 && err <= tol ? 0 : -1;
            default:
                return IsCheckIteration(method, t) && MeetsRule(method, err, tol) ? 0 : t == cap ? 1 : -1;
        }
    }

    /// <summary>The method's stopping comparison: strict for knopp, log and ssr; non-strict otherwise.</summary>
    private static bool MeetsRule(SinkhornMethod method, double err, double tol) =>
        method is SinkhornMethod.Knopp or SinkhornMethod.Log or SinkhornMethod.Selective ? err < tol : err <= tol;

    /// <summary>True when a run that stopped after <paramref name="t"/> iterations stopped on a check iteration.</summary>
    private static bool IsCheckIteration(SinkhornMethod method, int t) => method switch
    {
        SinkhornMethod.Stabilized => (t - 1) % 20 == 0,
        SinkhornMethod.EpsilonScaling => t - 1 > 35,
        SinkhornMethod.SBase => t >= 0,
        _ => (t - 1) % 10 == 0,
    };

    /// <summary>The candidate's experts where each row is a valid top-k of the target plan within the slack, else the target's.</summary>
    private static int[] Accept(double[]? candidate, SinkhornResult target, double relative, double floor)
    {
        var experts = target.Experts!;
        int n = experts.GetLength(0), k = experts.GetLength(1), e = target.Plan.GetLength(1);
        var result = new int[n * k];
        for (int i = 0; i < n; i++)
        {
            var row = new double[e];
            for (int j = 0; j < e; j++)
            {
                row[j] = target.Plan[i, j];
            }
            double slack = 2.0 * relative * (row.Length == 0 ? 0 : row.Max()) + floor;
            bool valid = candidate is not null && IsValid(candidate.AsSpan(i * k, k), row, slack);
            for (int s = 0; s < k; s++)
            {
                result[i * k + s] = valid ? (int)candidate![i * k + s] : experts[i, s];
            }
        }
        return result;
    }

    private static bool IsValid(ReadOnlySpan<double> chosen, double[] row, double slack)
    {
        var taken = new bool[row.Length];
        double weakest = double.PositiveInfinity;
        for (int s = 0; s < chosen.Length; s++)
        {
            double c = chosen[s];
            if (c < 0 || c >= row.Length || c != Math.Floor(c) || taken[(int)c])
            {
                return false;
            }
            taken[(int)c] = true;
            if (s > 0 && row[(int)chosen[s - 1]] < row[(int)c] - slack)
            {
                return false;
            }
            weakest = Math.Min(weakest, row[(int)c]);
        }
        for (int j = 0; j < row.Length; j++)
        {
            if (!taken[j] && row[j] > weakest + slack)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The weights a candidate's experts imply: sigmoid/softmax of X = -M for S-BASE, the plan renormalized for SSR.</summary>
    private static double[] ExpectedWeights(SinkhornMethod method, double[,] cost, double[,] plan, int[] experts, int n, int e, int k)
    {
        var result = new double[n * k];
        if (method == SinkhornMethod.SBase)
        {
            var logits = new double[n, e];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    logits[i, j] = -cost[i, j];
                }
            }
            var scores = RouterScores.Compute(logits, k == 1 ? ScoreFunction.Sigmoid : ScoreFunction.Softmax);
            for (int i = 0; i < n * k; i++)
            {
                result[i] = experts[i] < 0 ? double.NaN : scores[i / k, experts[i]];
            }
            return result;
        }
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int s = 0; s < k; s++)
            {
                int x = experts[i * k + s];
                result[i * k + s] = x < 0 ? double.NaN : plan[i, x];
                sum += result[i * k + s];
            }
            for (int s = 0; s < k; s++)
            {
                result[i * k + s] /= sum;
            }
        }
        return result;
    }

    private static ComparisonReport WithDetail(ComparisonReport report, string detail) =>
        report with { Detail = report.Detail is null ? detail : $"{report.Detail}; {detail}" };

    private static bool AllFinite(double[] x) => x.All(double.IsFinite);

    private static double[] Flat(double[,] m)
    {
        var flat = new double[m.Length];
        int e = m.GetLength(1);
        for (int i = 0; i < m.GetLength(0); i++)
        {
            for (int j = 0; j < e; j++)
            {
                flat[i * e + j] = m[i, j];
            }
        }
        return flat;
    }

    /// <summary>max over rows i of <paramref name="rowMax"/>(i) and 0, rows in parallel. Math.Max is commutative and
    /// associative exactly (NaN wins, +0 over -0), so the result is the sequential loop's whatever the schedule.</summary>
    private static double RowsMax(int n, Func<int, double> rowMax)
    {
        const int rowsPerBlock = 512;
        double result = 0;
        var gate = new object();
        Parallel.For(0, (n + rowsPerBlock - 1) / rowsPerBlock, () => 0.0, (block, _, local) =>
        {
            for (int i = block * rowsPerBlock, end = Math.Min(n, i + rowsPerBlock); i < end; i++)
            {
                local = Math.Max(local, rowMax(i));
            }
            return local;
        }, local =>
        {
            lock (gate)
            {
                result = Math.Max(result, local);
            }
        });
        return result;
    }

    private static double MaxAbs(double[,] values)
    {
        double max = 0;
        foreach (double x in values)
        {
            max = Math.Max(max, Math.Abs(x));
        }
        return max;
    }

    private static double MaxAbs(IEnumerable<double> values)
    {
        double max = 0;
        foreach (double x in values)
        {
            max = Math.Max(max, Math.Abs(x));
        }
        return max;
    }
}
