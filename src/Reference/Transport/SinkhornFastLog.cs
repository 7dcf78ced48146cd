namespace Reference.Transport;

public static partial class SinkhornFast
{
    /// <summary>
    /// <see cref="SinkhornLog.Solve"/> in parallel, with the same result: Mr = -M / reg row-major [N, E] and transposed
    /// [E, N]; the column update over columns in parallel (column j of the transposed copy, rows in order), the row update
    /// over rows in parallel; the plan of a check iteration and the final plan over rows in parallel.
    /// </summary>
    internal static SinkhornResult Log(SinkhornProblem p)
    {
        int n = p.N, e = p.E;

        // 1. Mr = -M / reg [N, E] and its transpose [E, N]; log a [N]; log b [E].
        var mr = new double[n * e];
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    mr[i * e + j] = -p.Cost[i, j] / p.Reg;
                }
            }
        });
        var mrT = Transpose(mr, n, e);
        var logA = p.A.Select(x => Math.Log(x)).ToArray();
        var logB = p.B.Select(x => Math.Log(x)).ToArray();

        // 2. Potentials in units of reg, starting at 0.
        var h = new double[n];
        var k = new double[e];
        var hPrevious = new double[n];
        var kPrevious = new double[e];
        var plan = new double[n, e];

        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < p.MaxIter; t++)
        {
            Array.Copy(h, hPrevious, n);
            Array.Copy(k, kPrevious, e);

            // 3. Column update: k_j = log b_j - logsumexp_i(Mr_ij + h_i), columns in parallel.
            ForColumns(e, j => k[j] = logB[j] - LogSumExpOfSum(mrT.AsSpan(j * n, n), h));

            // 4. Row update: h_i = log a_i - logsumexp_j(Mr_ij + k_j), rows in parallel.
            ForRows(n, (start, end) =>
            {
                for (int i = start; i < end; i++)
                {
                    h[i] = logA[i] - LogSumExpOfSum(mr.AsSpan(i * e, e), k);
                }
            });

            // 5. A non-finite potential: restore the previous ones and stop.
            if (!SinkhornProblem.AllFinite(h) || !SinkhornProblem.AllFinite(k))
            {
                Array.Copy(hPrevious, h, n);
                Array.Copy(kPrevious, k, e);
                status = SinkhornStatus.NumericalError;
                break;
            }
            completed = t + 1;

            // 6. Every 10th iteration: the column-marginal error, strict comparison. With tol = 0 the comparison is
            //    false whatever the error (a square root is never below 0, and NaN compares false), so the plan, which
            //    has no other use, is not computed (the validator's re-runs use tol = 0).
            if (t % SinkhornLog.CheckPeriod == 0 && p.Tol > 0)
            {
                LogPlan(mr, h, k, plan);
                if (ColumnError(plan, p.B) < p.Tol)
                {
                    status = SinkhornStatus.Converged;
                    break;
                }
            }
        }

        // 7. The plan and the potentials in cost units.
        LogPlan(mr, h, k, plan);
        var f = h.Select(x => p.Reg * x).ToArray();
        var g = k.Select(x => p.Reg * x).ToArray();
        return p.Finish(plan, f, g, completed, ColumnError(plan, p.B), status);
    }

    /// <summary>G_ij = exp(Mr_ij + h_i + k_j) into <paramref name="plan"/> [N, E], rows in parallel.</summary>
    private static void LogPlan(double[] mr, double[] h, double[] k, double[,] plan)
    {
        int n = h.Length, e = k.Length;
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    plan[i, j] = Math.Exp(mr[i * e + j] + h[i] + k[j]);
                }
            }
        });
    }

    /// <summary><see cref="SelectiveSinkhorn.Solve"/> with the same result: the fast log-domain run, the top-k of each
    /// plan row in parallel, and the same <see cref="SelectiveSinkhorn.Weigh"/>.</summary>
    private static SinkhornResult Selective(SinkhornProblem p)
    {
        var result = Log(p);
        return SelectiveSinkhorn.Weigh(p, result, TopExperts(result.Plan, p.K));
    }
}
