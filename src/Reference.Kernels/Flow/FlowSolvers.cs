using System.Numerics;
using Reference.Flow;
using Reference.Kernels.Native;

namespace Reference.Kernels.Flow;

/// <summary>The min-cost-flow solvers <c>reference flow --solver</c> offers.</summary>
public enum FlowSolver
{
    /// <summary>The readable reference, <see cref="MinCostFlow"/> (successive shortest paths).</summary>
    Reference,

    /// <summary>Google OR-Tools' SimpleMinCostFlow, in process (<see cref="OrToolsMinCostFlow"/>).</summary>
    OrTools,

    /// <summary>LEMON's network simplex through the native shim (<see cref="Native.Lemon"/>).</summary>
    Lemon,
}

/// <summary>
/// The three min-cost-flow solvers behind one signature: a <see cref="FlowProblem"/> in, the project's answer out
/// (<see cref="DimacsSolution"/>: status, exact cost, flows, certifying potentials). Each keeps its own algorithm; the
/// statuses are the project's (<see cref="MinCostFlowStatus"/>).
/// </summary>
public static class FlowSolvers
{
    /// <summary>Parses a solver name: reference, ortools or lemon.</summary>
    /// <param name="name">The name (case-insensitive).</param>
    /// <returns>The solver.</returns>
    /// <exception cref="ArgumentException">Any other name.</exception>
    public static FlowSolver Parse(string name) => name?.ToLowerInvariant() switch
    {
        "reference" => FlowSolver.Reference,
        "ortools" => FlowSolver.OrTools,
        "lemon" => FlowSolver.Lemon,
        _ => throw new ArgumentException($"unknown flow solver '{name}'; solvers: reference, ortools, lemon"),
    };

    /// <summary>Solves with the chosen solver (every supply and demand met exactly).</summary>
    /// <param name="solver">Which solver.</param>
    /// <param name="problem">The problem.</param>
    /// <returns>Status, cost, flows [m] and potentials [n]; all zero unless optimal. Potentials certify the flow
    /// (<see cref="FlowCertificate"/>): the reference's and LEMON's own, for OR-Tools (which gives none) the ones
    /// <see cref="FlowPotentials.FromFlow"/> derives.</returns>
    /// <exception cref="ArgumentException">The problem is malformed.</exception>
    /// <exception cref="OrToolsRefusedException">OR-Tools answered a status the project has no word for.</exception>
    /// <exception cref="InvalidOperationException">LEMON is unavailable or failed; or a solver's "optimal" flow is not
    /// optimal (no certifying potentials exist).</exception>
    public static DimacsSolution Solve(FlowSolver solver, FlowProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        switch (solver)
        {
            case FlowSolver.Reference:
                {
                    var network = MinCostFlow.FromProblem(problem);
                    var status = network.Solve();
                    return new DimacsSolution(status, network.OptimalCost(), network.Flows(), network.Potentials());
                }
            case FlowSolver.OrTools:
                {
                    var answer = OrToolsMinCostFlow.Solve(problem);
                    if (answer.Status != MinCostFlowStatus.Optimal) return Failed(answer.Status, problem);
                    var potentials = FlowPotentials.FromFlow(problem, answer.Flows)
                        ?? throw new InvalidOperationException("OR-Tools answered OPTIMAL, but its flow leaves a negative residual cycle (not optimal)");
                    return new DimacsSolution(MinCostFlowStatus.Optimal, answer.Cost, answer.Flows, potentials);
                }
            case FlowSolver.Lemon:
                return SolveWithLemon(problem);
            default:
                throw new ArgumentOutOfRangeException(nameof(solver), solver, "unknown solver");
        }
    }

    /// <summary>
    /// LEMON's network simplex, with the project's range rules applied first, since LEMON computes in int64 without
    /// checking: costs (<see cref="OrToolsMinCostFlow.CostOutOfRange"/>, the reference's bound) give
    /// <see cref="MinCostFlowStatus.BadCostRange"/>, then capacities (<see cref="OrToolsMinCostFlow.CapacityOutOfRange"/>)
    /// <see cref="MinCostFlowStatus.BadCapacityRange"/>; then LEMON's Unbalanced, Infeasible or Optimal. The cost is
    /// recomputed exactly from the flows (outside int64: BadCostRange).
    /// </summary>
    private static DimacsSolution SolveWithLemon(FlowProblem problem)
    {
        OrToolsMinCostFlow.Validate(problem);
        if (!Lemon.IsAvailable) throw new InvalidOperationException($"LEMON is unavailable: {Lemon.UnavailableReason}");
        if (OrToolsMinCostFlow.CostOutOfRange(problem)) return Failed(MinCostFlowStatus.BadCostRange, problem);
        if (OrToolsMinCostFlow.CapacityOutOfRange(problem)) return Failed(MinCostFlowStatus.BadCapacityRange, problem);
        var result = Lemon.MinCostFlow(LemonAlgorithm.NetworkSimplex, problem.NodeCount, problem.Tails, problem.Heads, null,
            problem.Capacities, problem.UnitCosts, problem.Supplies);
        switch (result.Status)
        {
            case LemonStatus.Optimal:
                BigInteger cost = BigInteger.Zero;
                for (int a = 0; a < problem.ArcCount; a++) cost += new BigInteger(result.Flows[a]) * problem.UnitCosts[a];
                if (cost > long.MaxValue || cost < long.MinValue) return Failed(MinCostFlowStatus.BadCostRange, problem);
                return new DimacsSolution(MinCostFlowStatus.Optimal, (long)cost, result.Flows, result.Potentials);
            case LemonStatus.Infeasible: return Failed(MinCostFlowStatus.Infeasible, problem);
            case LemonStatus.Unbalanced: return Failed(MinCostFlowStatus.Unbalanced, problem);
            default: throw new InvalidOperationException($"LEMON answered {result.Status}");
        }
    }

    private static DimacsSolution Failed(MinCostFlowStatus status, FlowProblem problem) =>
        new(status, 0, new long[problem.ArcCount], new long[problem.NodeCount]);
}

/// <summary>Certifying potentials for a given flow, for solvers that return none (OR-Tools).</summary>
public static class FlowPotentials
{
    /// <summary>
    /// Potentials p with c(a) - p(tail) + p(head) &gt;= 0 on every residual arc of the flow (the sign convention of
    /// <see cref="MinCostFlow.Potential"/>), or null when the residual network has a negative cycle, i.e. the flow is not
    /// optimal (Ahuja, Magnanti and Orlin 1993, theorem 9.1). p(v) = -(the shortest residual distance to v from a virtual
    /// root joined to every node at cost 0), found by Bellman-Ford (queue-based) in exact 128-bit arithmetic. Feasibility
    /// (bounds, conservation) is not checked here; <see cref="FlowCertificate.Check"/> does that.
    /// </summary>
    /// <param name="problem">The problem.</param>
    /// <param name="flows">[m] a flow with 0 &lt;= x &lt;= u.</param>
    /// <returns>[n] potentials, or null.</returns>
    /// <exception cref="ArgumentException">Lengths disagree or a flow is outside its bounds.</exception>
    /// <exception cref="OverflowException">A potential does not fit in int64 (impossible within the project's cost range).</exception>
    public static long[]? FromFlow(FlowProblem problem, long[] flows)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(flows);
        int n = problem.NodeCount, m = problem.ArcCount;
        if (flows.Length != m) throw new ArgumentException($"flows has length {flows.Length}, the problem {m} arcs", nameof(flows));

        // Residual arcs as (from, to, cost), grouped by their tail.
        var outgoing = new List<(int To, Int128 Cost)>[n];
        for (int v = 0; v < n; v++) outgoing[v] = [];
        for (int a = 0; a < m; a++)
        {
            long x = flows[a], u = problem.Capacities[a];
            if (x < 0 || x > u) throw new ArgumentException($"arc {a}: flow {x} outside [0, {u}]", nameof(flows));
            if (x < u) outgoing[problem.Tails[a]].Add((problem.Heads[a], problem.UnitCosts[a]));
            if (x > 0) outgoing[problem.Heads[a]].Add((problem.Tails[a], -(Int128)problem.UnitCosts[a]));
        }

        // Bellman-Ford from the virtual root: every distance starts at 0 (the root's arcs). Each label carries the number of
        // residual arcs on its path; a label reached over n arcs walks through n + 1 nodes, so it repeats one, and the
        // repeated stretch is a negative cycle (labels only ever decrease).
        var distance = new Int128[n];
        var pathArcs = new int[n];
        var queued = new bool[n];
        var queue = new Queue<int>(Enumerable.Range(0, n));
        Array.Fill(queued, true);
        while (queue.Count > 0)
        {
            int u = queue.Dequeue();
            queued[u] = false;
            foreach (var (to, cost) in outgoing[u])
            {
                Int128 candidate = distance[u] + cost;
                if (candidate >= distance[to]) continue;
                distance[to] = candidate;
                pathArcs[to] = pathArcs[u] + 1;
                if (pathArcs[to] >= n) return null;
                if (!queued[to])
                {
                    queued[to] = true;
                    queue.Enqueue(to);
                }
            }
        }
        var potentials = new long[n];
        for (int v = 0; v < n; v++) potentials[v] = checked((long)-distance[v]);
        return potentials;
    }
}
