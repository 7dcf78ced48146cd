namespace Reference.Transport;

/// <summary>Which Sinkhorn variant to run (proofs/sinkhorn.md, Definition: POT methods, S-BASE, SSR). The CLI names are in brackets.</summary>
public enum SinkhornMethod
{
    /// <summary>[<c>knopp</c>] Plain matrix scaling on K = exp(-M/reg) (POT <c>sinkhorn_knopp</c>). Fast, but K under- or
    /// overflows once |M|/reg passes about 745; that is reported as <see cref="SinkhornStatus.NumericalError"/>.</summary>
    Knopp,

    /// <summary>[<c>log</c>] The same iteration on the potentials f, g with log-sum-exp (POT <c>sinkhorn_log</c>).
    /// The numerically stable reference for small reg, and the default.</summary>
    Log,

    /// <summary>[<c>stabilized</c>] Matrix scaling with absorption of large scalings into the potentials
    /// (POT <c>sinkhorn_stabilized</c>; Schmitzer 2016).</summary>
    Stabilized,

    /// <summary>[<c>eps-scaling</c>] Stabilized Sinkhorn on a decreasing schedule of regularizations, warm-started
    /// (POT <c>sinkhorn_epsilon_scaling</c>; Schmitzer 2016).</summary>
    EpsilonScaling,

    /// <summary>[<c>sbase</c>] Megatron-LM's S-BASE router: scaling of exp(X) with a 1e-8 guard, plus top-k selection.</summary>
    SBase,

    /// <summary>[<c>ssr</c>] Selective Sinkhorn Routing: the log-domain plan at reg = xi, plus top-k selection and
    /// weights renormalized from the plan.</summary>
    Selective,
}

/// <summary>How a Sinkhorn run ended. The integer values are the CLI's <c>status</c> output.</summary>
public enum SinkhornStatus
{
    /// <summary>0: the method's stopping rule fired; the returned plan satisfies it.</summary>
    Converged = 0,

    /// <summary>1: the iteration cap was reached before the stopping rule fired.</summary>
    MaxIterations = 1,

    /// <summary>2: an update produced a zero divisor or a non-finite value. The result holds the last iterate whose
    /// values were all finite, or NaN everywhere when no such iterate exists.</summary>
    NumericalError = 2,
}

/// <summary>Options for <see cref="Sinkhorn.Solve"/>. Defaults follow proofs/sinkhorn.md, Definition: Parameters.</summary>
public sealed record SinkhornOptions
{
    /// <summary>The variant. Default <see cref="SinkhornMethod.Log"/>.</summary>
    public SinkhornMethod Method { get; init; } = SinkhornMethod.Log;

    /// <summary>The entropic regularization reg &gt; 0 (for <see cref="SinkhornMethod.Selective"/>, the paper's xi).
    /// Required by every method except <see cref="SinkhornMethod.SBase"/>, which has none (its implicit reg is 1) and
    /// rejects one, so that nobody believes it is used.</summary>
    public double? Regularization { get; init; }

    /// <summary>The iteration cap, at least 1. Null means 1000, or 10000 for S-BASE. For eps-scaling it caps the outer
    /// steps, and POT raises it to at least 35.</summary>
    public int? MaxIterations { get; init; }

    /// <summary>The stopping tolerance, finite and &gt;= 0. Null means 1e-9, or 1e-4 for S-BASE (Megatron's default).</summary>
    public double? Tolerance { get; init; }

    /// <summary>Experts per token for <see cref="SinkhornMethod.SBase"/> and <see cref="SinkhornMethod.Selective"/>, 1..E.
    /// Default 1. Ignored by the other methods.</summary>
    public int K { get; init; } = 1;

    /// <summary>The row marginal a [N], every entry finite and &gt; 0. Null means uniform 1/N.</summary>
    public IReadOnlyList<double>? RowMarginal { get; init; }

    /// <summary>The column marginal b [E], every entry finite and &gt; 0. Null means uniform 1/E.
    /// POT does not check that sum a = sum b, and neither does this: unequal masses make the column error stay
    /// away from 0, which is reported as non-convergence.</summary>
    public IReadOnlyList<double>? ColumnMarginal { get; init; }

    /// <summary>The absorption threshold tau of the stabilized and eps-scaling methods. Default 1e3 (POT).</summary>
    public double Tau { get; init; } = 1e3;

    /// <summary>The starting regularization eps0 of eps-scaling. Default 1e4 (POT).</summary>
    public double Epsilon0 { get; init; } = 1e4;

    /// <summary>The cap on the inner stabilized iterations of each eps-scaling step. Default 100 (POT).</summary>
    public int InnerMaxIterations { get; init; } = 100;
}

/// <summary>The result of a Sinkhorn run.</summary>
/// <param name="Plan">G [N, E], the transport plan. Non-negative and finite unless <paramref name="Status"/> is
/// <see cref="SinkhornStatus.NumericalError"/> with no finite iterate, when it is all NaN.</param>
/// <param name="F">f [N], the row potential in cost units: f = reg log u, so that G_ij = exp((f_i + g_j - M_ij) / reg)
/// (for S-BASE, reg = 1: f = log d0).</param>
/// <param name="G">g [E], the column potential: g = reg log v (for S-BASE, g = log d1).</param>
/// <param name="Iterations">The number of completed iterations whose result is returned (outer steps for eps-scaling).</param>
/// <param name="Error">The method's stopping measure evaluated at the returned plan: ||G^T 1 - b||_2 for knopp, log,
/// stabilized and ssr; ||G^T 1 - b||_2^2 + ||G 1 - a||_2^2 for eps-scaling; mean |d1_old - d1| of the last iteration
/// for S-BASE. NaN when the plan is NaN.</param>
/// <param name="Converged">True exactly when <paramref name="Status"/> is <see cref="SinkhornStatus.Converged"/>.</param>
/// <param name="Status">How the run ended: converged, iteration cap, or numerical error.</param>
/// <param name="Experts">[N, k] for S-BASE and ssr: each token's top-k experts by plan value, best first, ties to the
/// lower index (-1 when the plan is NaN). Null for the other methods.</param>
/// <param name="Weights">[N, k] for S-BASE and ssr: the gate weights at those experts. Null for the other methods.</param>
public sealed record SinkhornResult(
    double[,] Plan,
    double[] F,
    double[] G,
    int Iterations,
    double Error,
    bool Converged,
    SinkhornStatus Status,
    int[,]? Experts,
    double[,]? Weights);

/// <summary>
/// Entropic optimal transport by Sinkhorn iterations (proofs/sinkhorn.md, Definition), the reference: double precision,
/// single-threaded, deterministic. One facade over six variants, each in its own file.
/// </summary>
/// <remarks>
/// <para>Problem: for a cost M [N,E] and marginals a [N], b [E] (default uniform 1/N and 1/E),</para>
/// <para>minimize over G &gt;= 0:  &lt;G, M&gt; + reg sum_ij G_ij log G_ij   subject to  G 1 = a,  G^T 1 = b.</para>
/// <para>Its solution has the form G = diag(u) K diag(v) with K = exp(-M/reg); Sinkhorn alternates v = b / (K^T u) and
/// u = a / (K v). For routing, the cost is M = -X for logits X, so that the plan favours large logits.</para>
/// <para>Non-convergence and numerical failure are never silent: see <see cref="SinkhornResult.Status"/>.</para>
/// <para>Sources: Cuturi 2013, "Sinkhorn Distances"; Schmitzer 2016, "Stabilized Sparse Scaling Algorithms for Entropy
/// Regularized Transport Problems"; POT 0.8.2, <c>ot/bregman.py</c> (<c>sinkhorn_knopp</c>, <c>sinkhorn_log</c>,
/// <c>sinkhorn_stabilized</c>, <c>sinkhorn_epsilon_scaling</c>); Megatron-LM,
/// <c>megatron/core/transformer/moe/moe_utils.py</c> (<c>sinkhorn</c>) and its router (S-BASE); Clark et al. 2022,
/// "Unified Scaling Laws for Routed Language Models" (S-BASE).</para>
/// <para>See also: <see cref="SinkhornMethod"/> for the variants, and proofs/sinkhorn.md for what is proved and tested.</para>
/// </remarks>
public static class Sinkhorn
{
    /// <summary>Solves the entropic problem for a cost matrix.</summary>
    /// <param name="cost">M, [N, E], finite, N &gt;= 1 and E &gt;= 1.</param>
    /// <param name="options">Method, regularization, iteration cap, tolerance, marginals, k.</param>
    /// <returns>The plan, potentials, iteration count, error and status; experts and weights for S-BASE and ssr.</returns>
    /// <exception cref="ArgumentException">A cost or marginal entry is not finite, a marginal is not positive or has the
    /// wrong length, reg is missing or not positive (or given to S-BASE), max_iter &lt; 1, tol is negative or not finite,
    /// or k is outside 1..E for S-BASE and ssr.</exception>
    public static SinkhornResult Solve(double[,] cost, SinkhornOptions options)
    {
        Guard.Finite(cost, nameof(cost));
        return Run(SinkhornProblem.Create(cost, nameof(cost), options));
    }

    /// <summary>Solves the entropic problem for router logits: the cost is M = -X (proofs/sinkhorn.md, Definition: Problem).
    /// Negation is exact, so this equals <see cref="Solve"/> on -X bit for bit.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">Method, regularization, iteration cap, tolerance, marginals, k.</param>
    /// <returns>The same as <see cref="Solve"/>.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Solve"/>, naming <c>logits</c>.</exception>
    public static SinkhornResult SolveLogits(double[,] logits, SinkhornOptions options)
    {
        Guard.Finite(logits, nameof(logits));
        int n = logits.GetLength(0), e = logits.GetLength(1);
        var cost = new double[n, e]; // [N, E]
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                cost[i, j] = -logits[i, j];
            }
        }
        return Run(SinkhornProblem.Create(cost, nameof(logits), options));
    }

    private static SinkhornResult Run(SinkhornProblem problem) => problem.Method switch
    {
        SinkhornMethod.Knopp => SinkhornKnopp.Solve(problem),
        SinkhornMethod.Log => SinkhornLog.Solve(problem),
        SinkhornMethod.Stabilized => SinkhornStabilized.Solve(problem),
        SinkhornMethod.EpsilonScaling => SinkhornEpsilonScaling.Solve(problem),
        SinkhornMethod.SBase => SBase.Solve(problem),
        SinkhornMethod.Selective => SelectiveSinkhorn.Solve(problem),
        _ => throw new ArgumentOutOfRangeException(nameof(problem), problem.Method, "unknown Sinkhorn method"),
    };
}
