using System.Globalization;

namespace Reference.Transport;

/// <summary>
/// The checked, resolved options of one Sinkhorn run on a cost M [N, E]: reg, max_iter, tol (with the method's defaults)
/// and the marginals a [N] and b [E] (uniform when not given). The references and the optimized paths (CPU kernel, GPU
/// kernel) resolve their options here, so that they accept and reject exactly the same inputs with the same messages.
/// </summary>
/// <param name="Reg">The entropic regularization (NaN for S-BASE, which has none).</param>
/// <param name="MaxIter">The iteration limit: the given one, else 10000 for S-BASE and 1000 otherwise.</param>
/// <param name="Tol">The stopping tolerance: the given one, else 1e-4 for S-BASE and 1e-9 otherwise.</param>
/// <param name="A">Row marginal [N], every entry finite and &gt; 0.</param>
/// <param name="B">Column marginal [E], every entry finite and &gt; 0.</param>
public sealed record SinkhornSettings(double Reg, int MaxIter, double Tol, double[] A, double[] B)
{
    /// <summary>Checks <paramref name="options"/> against a cost with <paramref name="n"/> rows and <paramref name="e"/>
    /// columns and resolves the method's defaults.</summary>
    /// <param name="options">The caller's options.</param>
    /// <param name="n">N, the cost's rows.</param>
    /// <param name="e">E, the cost's columns.</param>
    /// <param name="costName">The argument name used in messages about shapes: <c>cost</c> or <c>logits</c>.</param>
    /// <returns>The resolved settings.</returns>
    /// <exception cref="ArgumentException">An empty cost, reg missing or set where the method has none, k out of range, or
    /// a marginal of the wrong length, not finite or not positive; the message names the argument.</exception>
    /// <exception cref="ArgumentOutOfRangeException">reg, max_iter, tol, tau, epsilon0 or inner_max_iter out of range.</exception>
    public static SinkhornSettings Resolve(SinkhornOptions options, int n, int e, string costName)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (n < 1 || e < 1)
        {
            throw new ArgumentException($"{costName} has shape [{n}, {e}]; Sinkhorn needs N >= 1 and E >= 1", costName);
        }
        bool sbase = options.Method == SinkhornMethod.SBase;

        double reg = double.NaN;
        if (sbase)
        {
            if (options.Regularization is not null)
            {
                throw new ArgumentException(
                    "reg is set, but sbase has no regularization (Megatron's S-BASE scales exp(X), i.e. reg = 1); leave reg unset",
                    "reg");
            }
        }
        else
        {
            reg = options.Regularization
                ?? throw new ArgumentException($"reg is required for method {SinkhornProblem.Name(options.Method)}", "reg");
            if (!(reg > 0) || !double.IsFinite(reg))
            {
                throw new ArgumentOutOfRangeException("reg", reg, $"reg = {Format(reg)} must be finite and > 0");
            }
        }

        int maxIter = options.MaxIterations ?? (sbase ? 10000 : 1000);
        if (maxIter < 1)
        {
            throw new ArgumentOutOfRangeException("max_iter", maxIter, $"max_iter = {maxIter} must be >= 1");
        }
        double tol = options.Tolerance ?? (sbase ? 1e-4 : 1e-9);
        if (!(tol >= 0) || !double.IsFinite(tol))
        {
            throw new ArgumentOutOfRangeException("tol", tol, $"tol = {Format(tol)} must be finite and >= 0");
        }
        if (sbase || options.Method == SinkhornMethod.Selective)
        {
            Guard.InRange(options.K, 1, e, "k");
        }
        if (options.Method is SinkhornMethod.Stabilized or SinkhornMethod.EpsilonScaling)
        {
            if (!(options.Tau > 0) || !double.IsFinite(options.Tau))
            {
                throw new ArgumentOutOfRangeException("tau", options.Tau, $"tau = {Format(options.Tau)} must be finite and > 0");
            }
        }
        if (options.Method == SinkhornMethod.EpsilonScaling)
        {
            if (!(options.Epsilon0 > 0) || !double.IsFinite(options.Epsilon0))
            {
                throw new ArgumentOutOfRangeException("epsilon0", options.Epsilon0,
                    $"epsilon0 = {Format(options.Epsilon0)} must be finite and > 0");
            }
            if (options.InnerMaxIterations < 1)
            {
                throw new ArgumentOutOfRangeException("inner_max_iter", options.InnerMaxIterations,
                    $"inner_max_iter = {options.InnerMaxIterations} must be >= 1");
            }
        }

        var a = Marginal(options.RowMarginal, n, "a", $"{costName} has N = {n} rows");
        var b = Marginal(options.ColumnMarginal, e, "b", $"{costName} has E = {e} columns");
        return new SinkhornSettings(reg, maxIter, tol, a, b);
    }

    /// <summary>A marginal: the given one after checks (finite, &gt; 0, the right length), or uniform 1/count.</summary>
    private static double[] Marginal(IReadOnlyList<double>? given, int count, string name, string because)
    {
        if (given is null)
        {
            var uniform = new double[count];
            Array.Fill(uniform, 1.0 / count);
            return uniform;
        }
        Guard.Length(given.Count, count, name, because);
        Guard.Finite(given, name);
        var result = new double[count];
        for (int i = 0; i < count; i++)
        {
            // Zero mass would make a potential -Inf (log 0); the problem then splits, and the references do not go there.
            if (!(given[i] > 0))
            {
                throw new ArgumentException($"{name}[{i}] is {Format(given[i])}; {name} must be > 0", name);
            }
            result[i] = given[i];
        }
        return result;
    }

    private static string Format(double x) => x.ToString("R", CultureInfo.InvariantCulture);
}
