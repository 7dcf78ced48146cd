using System.Runtime.InteropServices;

namespace Reference.Kernels.Native;

/// <summary>Which LEMON min-cost-flow solver to run.</summary>
public enum LemonAlgorithm
{
    /// <summary>LEMON's primal network simplex (<c>lemon::NetworkSimplex</c>, block-search pivot).</summary>
    NetworkSimplex = 0,

    /// <summary>LEMON's cost scaling push-relabel (<c>lemon::CostScaling</c>, PUSH method), run in a forked child
    /// process because of a memory bug in LEMON 1.3.1 (see <see cref="LemonStatus.Crashed"/>). The fork costs roughly
    /// 10–20 ms per call (it grows with the caller's memory), so do not time it against in-process solvers.</summary>
    CostScaling = 1,
}

/// <summary>The outcome of <see cref="Lemon.MinCostFlow"/>.</summary>
public enum LemonStatus
{
    /// <summary>An optimal flow and potentials were found.</summary>
    Optimal,

    /// <summary>No flow meets the supplies within the bounds.</summary>
    Infeasible,

    /// <summary>LEMON reports an unbounded objective (cannot happen with finite capacities).</summary>
    Unbounded,

    /// <summary>The supplies do not sum to zero; the shim does not call LEMON.</summary>
    Unbalanced,

    /// <summary>
    /// <see cref="LemonAlgorithm.CostScaling"/> only: the solver's child process died, or its answer failed the shim's
    /// check (bounds, conservation, cost, LEMON's own dual certificate). LEMON 1.3.1's
    /// <c>CostScaling::priceRefinement</c> can write past its bucket array on small inputs (found with AddressSanitizer),
    /// so the shim runs it in a forked process and reports the crash instead of taking the caller down. No answer.
    /// </summary>
    Crashed,

    /// <summary><see cref="LemonAlgorithm.CostScaling"/> only: the solver's child process ran past the shim's timeout
    /// (120 s unless <see cref="Lemon.SetIsolationTimeout"/> changed it) and was killed (the same LEMON bug can make it loop).
    /// No answer.</summary>
    TimedOut,
}

/// <summary>LEMON's answer to a min-cost-flow problem.</summary>
/// <param name="Status">The outcome.</param>
/// <param name="Cost">sum_a cost[a] flow[a] (LEMON's own total, in int64); 0 unless optimal.</param>
/// <param name="Flows">[m] the flow per arc; all 0 unless optimal.</param>
/// <param name="Potentials">[n] LEMON's node potentials converted to <c>Reference.Flow.MinCostFlow</c>'s sign convention
/// (c - p(tail) + p(head) &gt;= 0 on residual arcs; LEMON's own are the negatives); all 0 unless optimal.</param>
public sealed record LemonResult(LemonStatus Status, long Cost, long[] Flows, long[] Potentials);

/// <summary>
/// P/Invoke bindings to native/build/libreference_lemon.so, a C shim over the LEMON graph library's min-cost-flow
/// solvers (Dezső, Jüttner and Kovács, "LEMON – an open source C++ graph template library", 2011; Kovács,
/// "Minimum-cost flow algorithms: an experimental evaluation", 2015). It is the independent peer for
/// <c>Reference.Flow.MinCostFlow</c>. Never throws for a missing library: check <see cref="IsAvailable"/>.
/// <para>Problem: minimize sum_a cost[a] x[a] subject to sum_{a leaves v} x[a] - sum_{a enters v} x[a] = supply[v] and
/// lower[a] &lt;= x[a] &lt;= capacity[a]; nodes 0..n-1.</para>
/// </summary>
public static partial class Lemon
{
    private const string LibraryName = "reference_lemon";
    private const int ExpectedShimVersion = 1;

    private static readonly Lazy<string?> LoadProblem = new(Probe);

    /// <summary>True when the native library loads and has the expected ABI version.</summary>
    public static bool IsAvailable => LoadProblem.Value is null;

    /// <summary>Why the library is not available (the directories searched, or a version mismatch); null when it is.</summary>
    public static string? UnavailableReason => LoadProblem.Value;

    /// <summary>The command that builds the library, for messages.</summary>
    public const string BuildCommand = "native/build.sh   (needs cmake, g++ and liblemon-dev: apt-get install -y liblemon-dev)";

    /// <summary>The LEMON version the shim was compiled against, e.g. "1.3.1".</summary>
    /// <exception cref="InvalidOperationException">The library is not available.</exception>
    public static string LemonVersion
    {
        get
        {
            RequireAvailable();
            return Marshal.PtrToStringAnsi(rl_lemon_version()) ?? "";
        }
    }

    /// <summary>The shim's ABI version (1).</summary>
    /// <exception cref="InvalidOperationException">The library is not available.</exception>
    public static int ShimVersion
    {
        get
        {
            RequireAvailable();
            return rl_shim_version();
        }
    }

    /// <summary>
    /// Sets how long the isolated <see cref="LemonAlgorithm.CostScaling"/> child process may run before it is killed
    /// and <see cref="LemonStatus.TimedOut"/> is reported (the shim's default is 120 s). Process-wide.
    /// </summary>
    /// <param name="timeout">At least one millisecond.</param>
    /// <exception cref="ArgumentOutOfRangeException">Below one millisecond or beyond int.MaxValue milliseconds.</exception>
    /// <exception cref="InvalidOperationException">The library is not available.</exception>
    public static void SetIsolationTimeout(TimeSpan timeout)
    {
        if (timeout.TotalMilliseconds < 1 || timeout.TotalMilliseconds > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "must be between 1 ms and int.MaxValue ms");
        RequireAvailable();
        rl_set_isolation_timeout_ms((int)timeout.TotalMilliseconds);
    }

    /// <summary>Solves a min-cost-flow problem with LEMON.</summary>
    /// <param name="algorithm">Network simplex or cost scaling.</param>
    /// <param name="nodeCount">n &gt;= 0.</param>
    /// <param name="tails">[m] arc tails in 0..n-1.</param>
    /// <param name="heads">[m] arc heads in 0..n-1.</param>
    /// <param name="lower">[m] lower bounds, or null for all 0.</param>
    /// <param name="capacities">[m] upper bounds, each &gt;= its lower bound.</param>
    /// <param name="unitCosts">[m] costs per unit.</param>
    /// <param name="supplies">[n] supplies (negative: demands).</param>
    /// <returns>Status, cost, flows and potentials.</returns>
    /// <exception cref="ArgumentException">Lengths disagree, a node is out of range, or a bound is inverted.</exception>
    /// <exception cref="InvalidOperationException">The library is not available, or LEMON threw.</exception>
    public static unsafe LemonResult MinCostFlow(
        LemonAlgorithm algorithm, int nodeCount, int[] tails, int[] heads, long[]? lower, long[] capacities, long[] unitCosts, long[] supplies)
    {
        ArgumentNullException.ThrowIfNull(tails);
        ArgumentNullException.ThrowIfNull(heads);
        ArgumentNullException.ThrowIfNull(capacities);
        ArgumentNullException.ThrowIfNull(unitCosts);
        ArgumentNullException.ThrowIfNull(supplies);
        int m = tails.Length;
        if (nodeCount < 0) throw new ArgumentOutOfRangeException(nameof(nodeCount), nodeCount, "must be >= 0");
        if (heads.Length != m) throw new ArgumentException($"heads has length {heads.Length}, tails {m}", nameof(heads));
        if (capacities.Length != m) throw new ArgumentException($"capacities has length {capacities.Length}, tails {m}", nameof(capacities));
        if (unitCosts.Length != m) throw new ArgumentException($"unitCosts has length {unitCosts.Length}, tails {m}", nameof(unitCosts));
        if (lower is not null && lower.Length != m) throw new ArgumentException($"lower has length {lower.Length}, tails {m}", nameof(lower));
        if (supplies.Length != nodeCount) throw new ArgumentException($"supplies has length {supplies.Length}, nodeCount is {nodeCount}", nameof(supplies));
        for (int a = 0; a < m; a++)
        {
            if ((uint)tails[a] >= (uint)nodeCount) throw new ArgumentException($"tails[{a}] = {tails[a]} is outside 0..{nodeCount - 1}", nameof(tails));
            if ((uint)heads[a] >= (uint)nodeCount) throw new ArgumentException($"heads[{a}] = {heads[a]} is outside 0..{nodeCount - 1}", nameof(heads));
            long low = lower is null ? 0 : lower[a];
            if (capacities[a] < low) throw new ArgumentException($"capacities[{a}] = {capacities[a]} is below its lower bound {low}", nameof(capacities));
        }
        RequireAvailable();

        var flows = new long[m];
        var pi = new long[nodeCount];
        long cost = 0;
        int code;
        fixed (int* tailPointer = tails, headPointer = heads)
        fixed (long* lowerPointer = lower, capacityPointer = capacities, costPointer = unitCosts, supplyPointer = supplies)
        fixed (long* flowPointer = flows, potentialPointer = pi)
        {
            code = rl_min_cost_flow((int)algorithm, nodeCount, m, tailPointer, headPointer, lowerPointer, capacityPointer,
                costPointer, supplyPointer, flowPointer, potentialPointer, &cost);
        }

        switch (code)
        {
            case 0:
                var potentials = new long[nodeCount];
                for (int v = 0; v < nodeCount; v++) potentials[v] = checked(-pi[v]);
                return new LemonResult(LemonStatus.Optimal, cost, flows, potentials);
            case 1: return Empty(LemonStatus.Infeasible, nodeCount, m);
            case 2: return Empty(LemonStatus.Unbounded, nodeCount, m);
            case 3: return Empty(LemonStatus.Unbalanced, nodeCount, m);
            case -3: return Empty(LemonStatus.Crashed, nodeCount, m);
            case -4: return Empty(LemonStatus.TimedOut, nodeCount, m);
            case -1: throw new ArgumentException("the LEMON shim rejected the arguments (rl_min_cost_flow returned -1)");
            default: throw new InvalidOperationException($"LEMON failed (rl_min_cost_flow returned {code})");
        }
    }

    private static LemonResult Empty(LemonStatus status, int n, int m) => new(status, 0, new long[m], new long[n]);

    private static void RequireAvailable()
    {
        if (LoadProblem.Value is { } problem) throw new InvalidOperationException(problem);
    }

    private static string? Probe()
    {
        try
        {
            NativeLibraries.EnsureRegistered();
            if (!NativeLibraries.TryLoad(LibraryName, out _))
            {
                return $"{NativeLibraries.FileName(LibraryName)} not found in: {string.Join(", ", NativeLibraries.SearchDirectories())}. " +
                       $"Build it with {BuildCommand}, or set {NativeLibraries.DirectoryVariable}.";
            }

            int version = rl_shim_version();
            return version == ExpectedShimVersion
                ? null
                : $"{NativeLibraries.FileName(LibraryName)} has ABI version {version}, expected {ExpectedShimVersion}; rebuild it with {BuildCommand}.";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            return $"{NativeLibraries.FileName(LibraryName)} failed to load: {e.Message}";
        }
    }

    [LibraryImport(LibraryName)]
    private static partial int rl_shim_version();

    [LibraryImport(LibraryName)]
    private static partial IntPtr rl_lemon_version();

    [LibraryImport(LibraryName)]
    private static partial void rl_set_isolation_timeout_ms(int milliseconds);

    [LibraryImport(LibraryName)]
    private static unsafe partial int rl_min_cost_flow(
        int algorithm, int n, int m, int* tail, int* head, long* lower, long* cap, long* cost, long* supply,
        long* flowOut, long* potentialOut, long* costOut);
}
