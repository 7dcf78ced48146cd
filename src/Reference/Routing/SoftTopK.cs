namespace Reference.Routing;

/// <summary>Which SoftTopk operator (proofs/softtopk.md, Definition).</summary>
public enum SoftTopKMethod
{
    /// <summary>y_e = sigmoid((x_e - t)/tau) with the threshold t chosen so that sum_e y_e = k
    /// (<see cref="SoftTopKThreshold"/>).</summary>
    Threshold,

    /// <summary>y_e = E * G_e1 with G the entropic optimal-transport plan from the (min-max normalized) scores to the
    /// two anchors 0 and 1 (<see cref="SoftTopKEntropic"/>).</summary>
    Entropic,
}

/// <summary>Options for <see cref="SoftTopK.Compute"/>. <see cref="K"/> and <see cref="Tau"/> have no default, as in the
/// parameters of proofs/softtopk.md, Definition: Parameters.</summary>
public sealed record SoftTopKOptions
{
    /// <summary>The mass k that y distributes over the E entries of a row: 0 &lt; k &lt; E. Required.</summary>
    public required int K { get; init; }

    /// <summary>The temperature tau &gt; 0 (finite, a normal double). Required. For <see cref="SoftTopKMethod.Threshold"/>
    /// it is in the units of x; for <see cref="SoftTopKMethod.Entropic"/> it is the entropic regularization of the
    /// transport problem on min-max normalized scores, so it is dimensionless.</summary>
    public required double Tau { get; init; }

    /// <summary>Which operator. Default <see cref="SoftTopKMethod.Threshold"/>. The operator classes
    /// <see cref="SoftTopKThreshold"/> and <see cref="SoftTopKEntropic"/> ignore it.</summary>
    public SoftTopKMethod Method { get; init; } = SoftTopKMethod.Threshold;

    /// <summary>Also compute the exact Jacobian dy/dx [N, E, E]. Default false.</summary>
    public bool Jacobian { get; init; }

    /// <summary>The most iterations of the entropic solver per row (each iteration is one Sinkhorn row update and one
    /// safeguarded Newton step for the column potential). Default 200; in practice it rarely needs more than 60.
    /// The threshold operator's bisection needs no cap (it stops after at most about 60 halvings).</summary>
    public int MaxIterations { get; init; } = 200;
}

/// <summary>The result of a SoftTopk operator.</summary>
/// <param name="Y">[N, E]: the soft top-k indicator, every entry in [0, 1], every row summing to k.</param>
/// <param name="Jacobian">[N, E, E]: Jacobian[i, a, b] = dY[i, a] / dX[i, b] (rows are independent, so the cross-row
/// blocks are zero and are not stored); null unless <see cref="SoftTopKOptions.Jacobian"/> was set.</param>
/// <param name="Iterations">[N]: bisection halvings (threshold) or solver iterations (entropic) per row; 0 for a
/// constant row of the entropic operator, which needs no solve.</param>
/// <param name="SumError">[N]: |sum_e Y[i, e] - k| as computed, the marginal error of the result.</param>
/// <param name="Converged">[N]: true when the row's solve stopped because it had reached the resolution of double
/// precision; false only when the entropic solver hit <see cref="SoftTopKOptions.MaxIterations"/>.</param>
public sealed record SoftTopKResult(double[,] Y, double[,,]? Jacobian, int[] Iterations, double[] SumError, bool[] Converged);

/// <summary>
/// SoftTopk (proofs/softtopk.md, Definition): a smooth relaxation of the top-k indicator of each row of x, with temperature tau,
/// and its exact Jacobian. This facade dispatches on <see cref="SoftTopKOptions.Method"/> to
/// <see cref="SoftTopKThreshold"/> or <see cref="SoftTopKEntropic"/>.
/// </summary>
/// <remarks>
/// <para>Both operators map a row x in R^E to y in [0, 1]^E with sum_e y_e = k, are monotone (increasing x_e does not
/// decrease y_e nor increase any other y), commute with permutations of the entries, and tend to the hard top-k
/// indicator as tau -&gt; 0 when x_(k) &gt; x_(k+1) (the k-th and (k+1)-th largest values). Derivations, error bounds
/// and the tests of each claim: proofs/softtopk.md.</para>
/// <para>The MaxScore paper names a SoftTopk operator without publishing its definition; these are the two published-style definitions this repository fixes. The threshold
/// form is the sigmoid relaxation with a calibrated threshold (as in Amos et al. 2019, "The limited multi-label
/// projection layer"); the entropic form is the optimal-transport top-k of Xie et al. 2020, "Differentiable top-k with
/// optimal transport", NeurIPS.</para>
/// </remarks>
public static class SoftTopK
{
    /// <summary>Computes the chosen SoftTopk operator on every row of x.</summary>
    /// <param name="x">Scores, [N, E], finite, E &gt;= 2.</param>
    /// <param name="options">k, tau, the method and whether to compute the Jacobian.</param>
    /// <returns>y [N, E], the Jacobian [N, E, E] when asked, and per-row solver diagnostics.</returns>
    /// <exception cref="ArgumentException">x holds NaN or an infinity (the message names the first index), k is not in
    /// 1..E-1, or tau is not a positive, finite, normal double.</exception>
    public static SoftTopKResult Compute(double[,] x, SoftTopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Method switch
        {
            SoftTopKMethod.Threshold => SoftTopKThreshold.Compute(x, options),
            SoftTopKMethod.Entropic => SoftTopKEntropic.Compute(x, options),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Method, "unknown SoftTopk method"),
        };
    }

    /// <summary>The checks both operators share (proofs/conventions.md, Definition: Bad input): x finite, 0 &lt; k &lt; E, tau positive,
    /// finite and normal (a subnormal tau would overflow the Jacobian, whose entries reach 1/(4 tau)).</summary>
    internal static void Validate(double[,] x, SoftTopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(options);
        int e = x.GetLength(1);
        if (e < 2)
        {
            throw new ArgumentException($"x has E = {e} columns; SoftTopk needs E >= 2 so that 0 < k < E is possible", nameof(x));
        }
        Guard.InRange(options.K, 1, e - 1, "k");
        double tau = options.Tau;
        if (!double.IsNormal(tau) || tau < 0)
        {
            throw new ArgumentOutOfRangeException("tau", tau, $"tau = {Guard.Describe(tau)}; tau must be a finite, normal double > 0");
        }
        if (options.MaxIterations < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxIterations, "MaxIterations must be >= 1");
        }
        Guard.Finite(x, nameof(x));
    }

    /// <summary>The logistic function 1/(1 + exp(-s)), without overflow; the result lies in [0, 1] in floating point.</summary>
    internal static double Sigmoid(double s) => RouterScores.Sigmoid(s);

    /// <summary>logit(k/E) = log k - log(E - k): the argument at which E equal entries give y = k/E.</summary>
    internal static double Logit(int k, int e) => Math.Log(k) - Math.Log(e - k);
}
