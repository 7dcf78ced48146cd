using Reference.Routing;

namespace Reference.Transport;

/// <summary>
/// S-BASE routing (proofs/sinkhorn.md, Definition: S-BASE, method <c>sbase</c>): Megatron-LM's Sinkhorn router, with an iteration cap.
/// </summary>
/// <remarks>
/// <para>For logits X [N,E] (X = -M when a cost is given; negation is exact), Megatron-LM's
/// <c>megatron/core/transformer/moe/moe_utils.py</c> <c>sinkhorn</c> computes, with no shift of X,</para>
/// <para>C = exp(X),  d0 = 1_N,  d1 = 1_E,  eps = 1e-8,  err = 1e9,  and while err &gt; tol:</para>
/// <para>d0_i = (1/N) / (sum_j d1_j C_ij + eps),   d1_j = (1/E) / (sum_i d0_i C_ij + eps),
/// err = mean_j |d1_old_j - d1_j|,</para>
/// <para>and returns the plan G_ij = d1_j C_ij d0_i (in that order of multiplication). This is entropic transport with
/// reg = 1 on M = -X, apart from the eps guard; the potentials reported are f = log d0 and g = log d1, so that
/// G_ij = exp(X_ij + f_i + g_j) up to rounding. The marginals 1/N and 1/E become a and b when given (a generalization;
/// the defaults are Megatron's). Megatron's loop has no cap; this reference stops after max_iter iterations
/// (default 10000) and reports <see cref="SinkhornStatus.MaxIterations"/>. Default tol 1e-4 (Megatron's).</para>
/// <para>Routing (Megatron's router, training path, <c>sinkhorn_load_balancing</c>): experts = the top-k of each plan row
/// (ties to the lower expert, proofs/conventions.md, Definition: Ranking and ties); weights = sigmoid(X) at those experts when k = 1, and softmax(X)
/// over all E at those experts when k &gt; 1, not renormalized. The plan only selects.</para>
/// <para>Failure: exp(X) overflows for X &gt; 709.78 (Megatron, in float32, already above 88.7). An update that produces a
/// non-finite scaling or error restores the previous d0, d1 and ends the run with
/// <see cref="SinkhornStatus.NumericalError"/>; if not even the initial plan C is finite, the result is all NaN and the
/// experts are -1.</para>
/// <para>Clark et al. 2022, "Unified Scaling Laws for Routed Language Models", section 2.2 (S-BASE); Lewis et al. 2021,
/// "BASE Layers" (the balanced assignment that S-BASE relaxes).</para>
/// </remarks>
internal static class SBase
{
    /// <summary>Megatron's guard against division by zero.</summary>
    public const double Epsilon = 1e-8;

    public static SinkhornResult Solve(SinkhornProblem p)
    {
        int n = p.N, e = p.E;
        var a = p.A;
        var b = p.B;

        // 1. X = -M (the logits) and C = exp(X), [N, E], with no shift.
        var logits = new double[n, e];
        var c = new double[n, e];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                logits[i, j] = -p.Cost[i, j];
                c[i, j] = Math.Exp(logits[i, j]);
            }
        }

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

            // 3. d0_i = a_i / (sum_j d1_j C_ij + eps).
            for (int i = 0; i < n; i++)
            {
                double s = 0;
                for (int j = 0; j < e; j++)
                {
                    s += d1[j] * c[i, j];
                }
                d0[i] = a[i] / (s + Epsilon);
            }

            // 4. d1_j = b_j / (sum_i d0_i C_ij + eps).
            for (int j = 0; j < e; j++)
            {
                double s = 0;
                for (int i = 0; i < n; i++)
                {
                    s += d0[i] * c[i, j];
                }
                d1[j] = b[j] / (s + Epsilon);
            }

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
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                plan[i, j] = d1[j] * c[i, j] * d0[i];
            }
        }
        var f = d0.Select(x => Math.Log(x)).ToArray();
        var g = d1.Select(x => Math.Log(x)).ToArray();
        var result = p.Finish(plan, f, g, completed, err, status);

        // 7. Routing: the plan selects; sigmoid (k = 1) or softmax (k > 1) of X weighs.
        var experts = SinkhornProblem.TopExperts(result.Plan, p.K);
        var scores = RouterScores.Compute(logits, p.K == 1 ? ScoreFunction.Sigmoid : ScoreFunction.Softmax);
        var weights = new double[n, p.K];
        for (int i = 0; i < n; i++)
        {
            for (int slot = 0; slot < p.K; slot++)
            {
                int x = experts[i, slot];
                weights[i, slot] = x < 0 ? double.NaN : scores[i, x];
            }
        }
        return result with { Experts = experts, Weights = weights };
    }
}
