namespace Reference.Transport;

/// <summary>
/// Sinkhorn with absorption of large scalings into the potentials (proofs/sinkhorn.md, Definition: POT methods, method <c>stabilized</c>),
/// following POT 0.8.2 <c>ot.bregman.sinkhorn_stabilized</c>.
/// </summary>
/// <remarks>
/// <para>State: potentials alpha [N], beta [E] (cost units, start at 0 or at a warm start) and scalings u = 1/N, v = 1/E.
/// The working kernel is K = exp(-(M_ij - alpha_i - beta_j)/reg) and the plan G = diag(u) K diag(v). Each iteration
/// t = 0, 1, ... does</para>
/// <para>1. v = b / (K^T u),  u = a / (K v)  (the knopp step on the working kernel);</para>
/// <para>2. absorption: if max u &gt; tau or max v &gt; tau, then alpha += reg log u, beta += reg log v, u = 1/N, v = 1/E,
/// and K is recomputed;</para>
/// <para>3. on every 20th iteration (POT's <c>print_period</c> default), t = 0 included, err = ||G^T 1 - b||_2, and the
/// run stops when err &lt;= tol (POT compares non-strictly here, unlike knopp and log).</para>
/// <para>The returned potentials are f = alpha + reg log u and g = beta + reg log v, so G = exp((f + g - M)/reg).</para>
/// <para>A POT 0.8.2 detail kept on purpose: step 2 resets u to 1/N and v to 1/E rather than to 1, so right after an
/// absorption the plan carries an extra factor 1/(N E). The next iteration removes it (a full iteration does not depend
/// on the scale of u), and a run cannot stop on such a plan (its error is large), but a run that ends on the iteration
/// cap right after an absorption returns it; its error shows it.</para>
/// <para>Failure (stricter than POT, which checks only NaN and only after the error check): if K^T u has a zero, u or v
/// has a non-finite entry, or an absorption makes a potential non-finite, the previous state is restored and the run
/// ends with <see cref="SinkhornStatus.NumericalError"/>. Like knopp, the method starts from K = exp(-M/reg), so it fails
/// at iteration 0 when a whole column of that kernel underflows; eps-scaling exists for those regularizations.</para>
/// <para>Schmitzer 2016, "Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport Problems", section 3.</para>
/// </remarks>
internal static class SinkhornStabilized
{
    /// <summary>POT's default <c>print_period</c>: the error is checked on every 20th iteration, iteration 0 included.</summary>
    public const int CheckPeriod = 20;

    public static SinkhornResult Solve(SinkhornProblem p) =>
        Run(p, p.Reg, p.MaxIter, p.Tol, new double[p.N], new double[p.E]);

    /// <summary>One stabilized run from a warm start (also the inner solver of eps-scaling).</summary>
    /// <param name="p">The problem: cost, marginals, tau.</param>
    /// <param name="reg">The regularization for this run.</param>
    /// <param name="maxIter">The iteration cap.</param>
    /// <param name="tol">The tolerance (non-strict).</param>
    /// <param name="alpha0">The starting row potential [N], cost units.</param>
    /// <param name="beta0">The starting column potential [E].</param>
    /// <returns>The plan, f = alpha + reg log u and g = beta + reg log v, and the run's outcome.</returns>
    public static SinkhornResult Run(SinkhornProblem p, double reg, int maxIter, double tol, double[] alpha0, double[] beta0)
    {
        int n = p.N, e = p.E;
        var a = p.A;
        var b = p.B;

        // 1. State: potentials (warm start), scalings 1/N and 1/E, the working kernel.
        var alpha = (double[])alpha0.Clone();   // [N]
        var beta = (double[])beta0.Clone();     // [E]
        var u = new double[n];                  // [N]
        var v = new double[e];                  // [E]
        Array.Fill(u, 1.0 / n);
        Array.Fill(v, 1.0 / e);
        var kernel = Kernel(p.Cost, alpha, beta, reg);  // [N, E]

        var uPrevious = new double[n];
        var vPrevious = new double[e];
        var ktu = new double[e];                // [E]: K^T u
        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < maxIter; t++)
        {
            Array.Copy(u, uPrevious, n);
            Array.Copy(v, vPrevious, e);

            // 2. The knopp step on the working kernel: v = b / (K^T u), u = a / (K v).
            for (int j = 0; j < e; j++)
            {
                double s = 0;
                for (int i = 0; i < n; i++)
                {
                    s += kernel[i, j] * u[i];
                }
                ktu[j] = s;
                v[j] = b[j] / s;
            }
            for (int i = 0; i < n; i++)
            {
                double s = 0;
                for (int j = 0; j < e; j++)
                {
                    s += kernel[i, j] * v[j];
                }
                u[i] = a[i] / s;
            }
            if (Array.IndexOf(ktu, 0.0) >= 0 || !SinkhornProblem.AllFinite(u) || !SinkhornProblem.AllFinite(v))
            {
                Array.Copy(uPrevious, u, n);
                Array.Copy(vPrevious, v, e);
                status = SinkhornStatus.NumericalError;
                break;
            }

            // 3. Absorption: move large scalings into the potentials and restart the scalings.
            if (u.Max() > p.Tau || v.Max() > p.Tau)
            {
                var newAlpha = new double[n];
                var newBeta = new double[e];
                for (int i = 0; i < n; i++)
                {
                    newAlpha[i] = alpha[i] + reg * Math.Log(u[i]);
                }
                for (int j = 0; j < e; j++)
                {
                    newBeta[j] = beta[j] + reg * Math.Log(v[j]);
                }
                if (!SinkhornProblem.AllFinite(newAlpha) || !SinkhornProblem.AllFinite(newBeta))
                {
                    Array.Copy(uPrevious, u, n);
                    Array.Copy(vPrevious, v, e);
                    status = SinkhornStatus.NumericalError;
                    break;
                }
                alpha = newAlpha;
                beta = newBeta;
                Array.Fill(u, 1.0 / n);
                Array.Fill(v, 1.0 / e);
                kernel = Kernel(p.Cost, alpha, beta, reg);
            }
            completed = t + 1;

            // 4. Every 20th iteration: the column-marginal error, non-strict comparison.
            if (t % CheckPeriod == 0 && SinkhornProblem.ColumnError(Plan(p.Cost, alpha, beta, u, v, reg), b) <= tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }

        // 5. The plan and the absorbed potentials f = alpha + reg log u, g = beta + reg log v.
        var plan = Plan(p.Cost, alpha, beta, u, v, reg);
        var f = new double[n];
        var g = new double[e];
        for (int i = 0; i < n; i++)
        {
            f[i] = alpha[i] + reg * Math.Log(u[i]);
        }
        for (int j = 0; j < e; j++)
        {
            g[j] = beta[j] + reg * Math.Log(v[j]);
        }
        return p.Finish(plan, f, g, completed, SinkhornProblem.ColumnError(plan, b), status);
    }

    /// <summary>K_ij = exp(-(M_ij - alpha_i - beta_j) / reg), [N, E].</summary>
    private static double[,] Kernel(double[,] cost, double[] alpha, double[] beta, double reg)
    {
        var kernel = new double[alpha.Length, beta.Length];
        for (int i = 0; i < alpha.Length; i++)
        {
            for (int j = 0; j < beta.Length; j++)
            {
                kernel[i, j] = Math.Exp(-(cost[i, j] - alpha[i] - beta[j]) / reg);
            }
        }
        return kernel;
    }

    /// <summary>G_ij = exp(-(M_ij - alpha_i - beta_j)/reg + log u_i + log v_j), [N, E] (POT's log-space plan).</summary>
    private static double[,] Plan(double[,] cost, double[] alpha, double[] beta, double[] u, double[] v, double reg)
    {
        var plan = new double[alpha.Length, beta.Length];
        for (int i = 0; i < alpha.Length; i++)
        {
            for (int j = 0; j < beta.Length; j++)
            {
                plan[i, j] = Math.Exp(-(cost[i, j] - alpha[i] - beta[j]) / reg + Math.Log(u[i]) + Math.Log(v[j]));
            }
        }
        return plan;
    }
}
