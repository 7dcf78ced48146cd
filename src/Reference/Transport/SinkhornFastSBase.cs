using Reference.Routing;

namespace Reference.Transport;

public static partial class SinkhornFast
{
    /// <summary>
    /// <see cref="Transport.SBase.Solve"/> in parallel, with the same result: C = exp(X) row-major and transposed; d0 over
    /// rows in parallel, d1 over columns in parallel (column j of the transposed copy, rows in order); the error, the
    /// finiteness tests and the status sequential as in the reference; the plan, the top-k and the scores (the same
    /// <see cref="RouterScores.ComputeRow"/>) over rows in parallel.
    /// </summary>
    private static SinkhornResult SBase(SinkhornProblem p)
    {
        int n = p.N, e = p.E;
        var a = p.A;
        var b = p.B;

        // 1. X = -M (the logits) and C = exp(X), [N, E], with no shift; C transposed.
        var logits = new double[n, e];
        var c = new double[n * e];
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    logits[i, j] = -p.Cost[i, j];
                    c[i * e + j] = Math.Exp(logits[i, j]);
                }
            }
        });
        var cT = Transpose(c, n, e);

        // 2. d0 = 1 [N], d1 = 1 [E]; the error starts at 1e9 as in Megatron.
        var d0 = new double[n];
        var d1 = new double[e];
        Array.Fill(d0, 1.0);
        Array.Fill(d1, 1.0);
        var d1Old = (double[])d1.Clone();
        var d0Previous = new double[n];
        var d1Previous = new double[e];
        double err = 1e9;
        int completed = 0;
        var status = SinkhornStatus.MaxIterations;
        while (err > p.Tol)
        {
            if (completed == p.MaxIter)
            {
                break;
            }
            Array.Copy(d0, d0Previous, n);
            Array.Copy(d1, d1Previous, e);

            // 3. d0_i = a_i / (sum_j d1_j C_ij + eps), rows in parallel.
            ForRows(n, (start, end) =>
            {
                for (int i = start; i < end; i++)
                {
                    var row = c.AsSpan(i * e, e);
                    double s = 0;
                    for (int j = 0; j < row.Length; j++)
                    {
                        s += d1[j] * row[j];
                    }
                    d0[i] = a[i] / (s + Transport.SBase.Epsilon);
                }
            });

            // 4. d1_j = b_j / (sum_i d0_i C_ij + eps), columns in parallel.
            ForColumns(e, j =>
            {
                var column = cT.AsSpan(j * n, n);
                double s = 0;
                for (int i = 0; i < column.Length; i++)
                {
                    s += d0[i] * column[i];
                }
                d1[j] = b[j] / (s + Transport.SBase.Epsilon);
            });

            // 5. err = mean |d1_old - d1|; then d1_old = d1.
            double total = 0;
            for (int j = 0; j < e; j++)
            {
                total += Math.Abs(d1Old[j] - d1[j]);
            }
            double newErr = total / e;
            if (!SinkhornProblem.AllFinite(d0) || !SinkhornProblem.AllFinite(d1) || double.IsNaN(newErr))
            {
                Array.Copy(d0Previous, d0, n);
                Array.Copy(d1Previous, d1, e);
                status = SinkhornStatus.NumericalError;
                break;
            }
            err = newErr;
            Array.Copy(d1, d1Old, e);
            completed++;
        }
        if (status != SinkhornStatus.NumericalError && err <= p.Tol)
        {
            status = SinkhornStatus.Converged;
        }

        // 6. The plan G_ij = d1_j C_ij d0_i and the potentials log d0, log d1.
        var plan = new double[n, e];
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    plan[i, j] = d1[j] * c[i * e + j] * d0[i];
                }
            }
        });
        var f = d0.Select(x => Math.Log(x)).ToArray();
        var g = d1.Select(x => Math.Log(x)).ToArray();
        var result = p.Finish(plan, f, g, completed, err, status);

        // 7. Routing: the plan selects; sigmoid (k = 1) or softmax (k > 1) of X weighs. The logits are finite (the cost
        //    was checked), so RouterScores.Compute's check, which the rows skip, cannot fail.
        var experts = TopExperts(result.Plan, p.K);
        var function = p.K == 1 ? ScoreFunction.Sigmoid : ScoreFunction.Softmax;
        var scores = new double[n, e];
        var weights = new double[n, p.K];
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                RouterScores.ComputeRow(logits, scores, i, function);
                for (int slot = 0; slot < p.K; slot++)
                {
                    int x = experts[i, slot];
                    weights[i, slot] = x < 0 ? double.NaN : scores[i, x];
                }
            }
        });
        return result with { Experts = experts, Weights = weights };
    }
}
