namespace Reference.Transport;

/// <summary>
/// Stabilized Sinkhorn on a decreasing schedule of regularizations (proofs/sinkhorn.md, Definition: POT methods, method <c>eps-scaling</c>),
/// following POT 0.8.2 <c>ot.bregman.sinkhorn_epsilon_scaling</c>.
/// </summary>
/// <remarks>
/// <para>Outer steps t = 0, 1, ..., T - 1 with T = max(35, max_iter). Step t uses</para>
/// <para>reg_t = (eps0 - reg) exp(-t) + reg   (eps0 = 1e4 by default; reg_0 = eps0, and reg_t reaches reg to double
/// precision after about 40 steps),</para>
/// <para>and runs <see cref="SinkhornStabilized"/> at reg_t with at most 100 inner iterations, inner tolerance 1e-9 (fixed,
/// as in POT) and the same tau, warm-started from the previous step's absorbed potentials (f, g). The inner run's plan
/// and potentials become the current ones.</para>
/// <para>Stopping rule (POT): on every 10th outer step, t = 0 included, err = ||G^T 1 - b||_2^2 + ||G 1 - a||_2^2 (squared
/// norms, both marginals). On every step, stop when err &lt;= tol and t &gt; 35. POT tests the stored err, which may come
/// from an earlier step; this reference adds one guard so that "converged" is never stale: it stops only if the current
/// plan also has err &lt;= tol, and otherwise continues. With max_iter &lt;= 36 the rule can never fire.</para>
/// <para>The final plan is at reg_t of the last step, which may still exceed reg by (eps0 - reg) exp(-t) (about 2e-12
/// at t = 36 with the defaults).</para>
/// <para>Failure: an inner run that ends with a numerical error ends the outer loop with that inner run's result
/// (POT would warn and go on).</para>
/// <para>Schmitzer 2016, "Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport Problems", section 3.2;
/// Chizat, Peyré, Schmitzer and Vialard 2018, "Scaling Algorithms for Unbalanced Transport Problems".</para>
/// </remarks>
internal static class SinkhornEpsilonScaling
{
    /// <summary>POT's minimum number of outer steps; the stopping rule also needs t &gt; this.</summary>
    public const int MinOuterSteps = 35;

    /// <summary>The error is computed on every 10th outer step (POT's <c>print_period</c> default here).</summary>
    public const int CheckPeriod = 10;

    /// <summary>The inner runs' fixed tolerance (POT passes 1e-9 whatever the caller's tolerance).</summary>
    public const double InnerTolerance = 1e-9;

    public static SinkhornResult Solve(SinkhornProblem p)
    {
        int outerSteps = Math.Max(MinOuterSteps, p.MaxIter);
        var f = new double[p.N];     // [N]: warm start, cost units
        var g = new double[p.E];     // [E]
        SinkhornResult? current = null;
        double err = 1;              // POT's stored error: updated only on check steps
        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < outerSteps; t++)
        {
            // 1. The regularization of this step, decreasing exponentially from eps0 towards reg.
            double regT = (p.Epsilon0 - p.Reg) * Math.Exp(-t) + p.Reg;

            // 2. The inner stabilized run, warm-started.
            var inner = SinkhornStabilized.Run(p, regT, p.InnerMaxIter, InnerTolerance, f, g);
            current = inner;
            if (inner.Status == SinkhornStatus.NumericalError)
            {
                status = SinkhornStatus.NumericalError;
                break;
            }
            completed = t + 1;
            f = inner.F;
            g = inner.G;

            // 3. Every 10th step: both marginals, squared norms.
            if (t % CheckPeriod == 0)
            {
                err = Error(inner.Plan, p);
            }

            // 4. POT's rule on the stored error, plus the guard that the current plan passes too.
            if (err <= p.Tol && t > MinOuterSteps && Error(inner.Plan, p) <= p.Tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }

        // 5. The last inner run's plan and potentials (on a numerical error, the inner run's restored state, which
        //    Finish turns into NaN if it is not finite); the error of that plan.
        var last = current!;
        return p.Finish(last.Plan, last.F, last.G, completed, Error(last.Plan, p), status);
    }

    /// <summary>||G^T 1 - b||_2^2 + ||G 1 - a||_2^2.</summary>
    private static double Error(double[,] plan, SinkhornProblem p)
    {
        double column = SinkhornProblem.ColumnError(plan, p.B);
        double row = SinkhornProblem.RowError(plan, p.A);
        return column * column + row * row;
    }
}
