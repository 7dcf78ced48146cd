namespace Reference.Transport;

public static partial class SinkhornFast
{
    /// <summary>
    /// <see cref="SinkhornKnopp.Solve"/> in parallel, with the same result: the kernel K row-major [N, E] and transposed
    /// [E, N]; v = b / (K^T u) over columns in parallel, u = a / (K v) over rows in parallel.
    /// </summary>
    internal static SinkhornResult Knopp(SinkhornProblem p)
    {
        int n = p.N, e = p.E;
        var a = p.A;
        var b = p.B;

        // 1. The Gibbs kernel K = exp(-M / reg), [N, E], and its transpose.
        var kernel = new double[n * e];
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    kernel[i * e + j] = Math.Exp(p.Cost[i, j] / -p.Reg);
                }
            }
        });
        var kernelT = Transpose(kernel, n, e);

        // 2. Initial scalings: u = 1/N, v = 1/E.
        var u = new double[n];
        var v = new double[e];
        Array.Fill(u, 1.0 / n);
        Array.Fill(v, 1.0 / e);
        var ktu = new double[e];
        var uPrevious = new double[n];
        var vPrevious = new double[e];
        var plan = new double[n, e];

        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < p.MaxIter; t++)
        {
            Array.Copy(u, uPrevious, n);
            Array.Copy(v, vPrevious, e);

            // 3-5. v = b / (K^T u), u = a / (K v); machine precision reached: come back to the previous scalings and stop.
            if (!ScalingStep(kernel, kernelT, u, v, ktu, a, b))
            {
                Array.Copy(uPrevious, u, n);
                Array.Copy(vPrevious, v, e);
                status = SinkhornStatus.NumericalError;
                break;
            }
            completed = t + 1;

            // 6. Every 10th iteration: the column-marginal error of the current plan, strict comparison (skipped when
            //    tol = 0, where it cannot fire: see Log).
            if (t % SinkhornKnopp.CheckPeriod == 0 && p.Tol > 0)
            {
                KnoppPlan(kernel, u, v, plan);
                if (ColumnError(plan, b) < p.Tol)
                {
                    status = SinkhornStatus.Converged;
                    break;
                }
            }
        }

        // 7. The plan G = diag(u) K diag(v) and the potentials f = reg log u, g = reg log v.
        KnoppPlan(kernel, u, v, plan);
        var f = u.Select(x => p.Reg * Math.Log(x)).ToArray();
        var g = v.Select(x => p.Reg * Math.Log(x)).ToArray();
        return p.Finish(plan, f, g, completed, ColumnError(plan, b), status);
    }

    /// <summary>One scaling step of knopp and stabilized: v_j = b_j / s_j with s_j = sum_i K_ij u_i (i in order, columns
    /// in parallel, ktu_j = s_j), then u_i = a_i / sum_j K_ij v_j (j in order, rows in parallel). False when it divided by
    /// zero or left a non-finite scaling (the readable methods' test after the step, in the same order).</summary>
    private static bool ScalingStep(double[] kernel, double[] kernelT, double[] u, double[] v, double[] ktu, double[] a, double[] b)
    {
        int n = u.Length, e = v.Length;
        ForColumns(e, j =>
        {
            var column = kernelT.AsSpan(j * n, n);
            double s = 0;
            for (int i = 0; i < column.Length; i++)
            {
                s += column[i] * u[i];
            }
            ktu[j] = s;
            v[j] = b[j] / s;
        });
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                var row = kernel.AsSpan(i * e, e);
                double s = 0;
                for (int j = 0; j < row.Length; j++)
                {
                    s += row[j] * v[j];
                }
                u[i] = a[i] / s;
            }
        });
        return Array.IndexOf(ktu, 0.0) < 0 && SinkhornProblem.AllFinite(u) && SinkhornProblem.AllFinite(v);
    }

    /// <summary>G_ij = u_i K_ij v_j into <paramref name="plan"/> [N, E], rows in parallel.</summary>
    private static void KnoppPlan(double[] kernel, double[] u, double[] v, double[,] plan)
    {
        int n = u.Length, e = v.Length;
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    plan[i, j] = u[i] * kernel[i * e + j] * v[j];
                }
            }
        });
    }

    /// <summary>
    /// <see cref="SinkhornStabilized.Run"/> in parallel, with the same result: the working kernel row-major and
    /// transposed (recomputed in parallel at each absorption), the scaling step of <see cref="Knopp"/>, the absorption
    /// test and updates sequential as in the reference, the plans in parallel.
    /// </summary>
    internal static SinkhornResult Stabilized(SinkhornProblem p, double reg, int maxIter, double tol, double[] alpha0, double[] beta0)
    {
        int n = p.N, e = p.E;
        var a = p.A;
        var b = p.B;

        // 1. State: potentials (warm start), scalings 1/N and 1/E, the working kernel.
        var alpha = (double[])alpha0.Clone();
        var beta = (double[])beta0.Clone();
        var u = new double[n];
        var v = new double[e];
        Array.Fill(u, 1.0 / n);
        Array.Fill(v, 1.0 / e);
        var kernel = new double[n * e];
        StabilizedKernel(p.Cost, alpha, beta, reg, kernel);
        var kernelT = Transpose(kernel, n, e);

        var uPrevious = new double[n];
        var vPrevious = new double[e];
        var ktu = new double[e];
        var plan = new double[n, e];
        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < maxIter; t++)
        {
            Array.Copy(u, uPrevious, n);
            Array.Copy(v, vPrevious, e);

            // 2. The knopp step on the working kernel.
            if (!ScalingStep(kernel, kernelT, u, v, ktu, a, b))
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
                StabilizedKernel(p.Cost, alpha, beta, reg, kernel);
                kernelT = Transpose(kernel, n, e);
            }
            completed = t + 1;

            // 4. Every 20th iteration: the column-marginal error, non-strict comparison.
            if (t % SinkhornStabilized.CheckPeriod == 0)
            {
                StabilizedPlan(p.Cost, alpha, beta, u, v, reg, plan);
                if (ColumnError(plan, b) <= tol)
                {
                    status = SinkhornStatus.Converged;
                    break;
                }
            }
        }

        // 5. The plan and the absorbed potentials f = alpha + reg log u, g = beta + reg log v.
        StabilizedPlan(p.Cost, alpha, beta, u, v, reg, plan);
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
        return p.Finish(plan, f, g, completed, ColumnError(plan, b), status);
    }

    /// <summary>K_ij = exp(-(M_ij - alpha_i - beta_j) / reg) into <paramref name="kernel"/> [N, E] row-major, rows in parallel.</summary>
    private static void StabilizedKernel(double[,] cost, double[] alpha, double[] beta, double reg, double[] kernel)
    {
        int n = alpha.Length, e = beta.Length;
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    kernel[i * e + j] = Math.Exp(-(cost[i, j] - alpha[i] - beta[j]) / reg);
                }
            }
        });
    }

    /// <summary>G_ij = exp(-(M_ij - alpha_i - beta_j)/reg + log u_i + log v_j) into <paramref name="plan"/>, rows in
    /// parallel (log u_i and log v_j are the same doubles however often they are computed, so they are computed once).</summary>
    private static void StabilizedPlan(double[,] cost, double[] alpha, double[] beta, double[] u, double[] v, double reg, double[,] plan)
    {
        int n = alpha.Length, e = beta.Length;
        var logU = u.Select(x => Math.Log(x)).ToArray();
        var logV = v.Select(x => Math.Log(x)).ToArray();
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    plan[i, j] = Math.Exp(-(cost[i, j] - alpha[i] - beta[j]) / reg + logU[i] + logV[j]);
                }
            }
        });
    }

    /// <summary><see cref="SinkhornEpsilonScaling.Solve"/> with the same result: the same outer loop over the fast
    /// <see cref="Stabilized"/> runs, and the fast marginal errors.</summary>
    internal static SinkhornResult EpsilonScaling(SinkhornProblem p)
    {
        int outerSteps = Math.Max(SinkhornEpsilonScaling.MinOuterSteps, p.MaxIter);
        var f = new double[p.N];
        var g = new double[p.E];
        SinkhornResult? current = null;
        double err = 1;
        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < outerSteps; t++)
        {
            // 1. The regularization of this step.
            double regT = (p.Epsilon0 - p.Reg) * Math.Exp(-t) + p.Reg;

            // 2. The inner stabilized run, warm-started.
            var inner = Stabilized(p, regT, p.InnerMaxIter, SinkhornEpsilonScaling.InnerTolerance, f, g);
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
            if (t % SinkhornEpsilonScaling.CheckPeriod == 0)
            {
                err = EpsilonError(inner.Plan, p);
            }

            // 4. POT's rule on the stored error, plus the guard that the current plan passes too.
            if (err <= p.Tol && t > SinkhornEpsilonScaling.MinOuterSteps && EpsilonError(inner.Plan, p) <= p.Tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }

        // 5. The last inner run's plan and potentials; the error of that plan.
        var last = current!;
        return p.Finish(last.Plan, last.F, last.G, completed, EpsilonError(last.Plan, p), status);
    }

    /// <summary>||G^T 1 - b||_2^2 + ||G 1 - a||_2^2, as SinkhornEpsilonScaling's error.</summary>
    private static double EpsilonError(double[,] plan, SinkhornProblem p)
    {
        double column = ColumnError(plan, p.B);
        double row = RowError(plan, p.A);
        return column * column + row * row;
    }
}
