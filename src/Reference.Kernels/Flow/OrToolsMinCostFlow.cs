using System.Numerics;
using Reference.Flow;
using MinCostFlowBase = Google.OrTools.Graph.MinCostFlowBase;

namespace Reference.Kernels.Flow;

/// <summary>An answer from one of the project's min-cost-flow solvers, in the project's terms.</summary>
/// <param name="Status">The outcome, as <see cref="MinCostFlowStatus"/>.</param>
/// <param name="Cost">sum_a c(a) x[a], recomputed exactly from the flows; 0 unless optimal.</param>
/// <param name="MaximumFlow">The total amount sent out of the supply nodes; 0 unless optimal.</param>
/// <param name="Flows">[m] the flow per arc; all 0 unless optimal.</param>
public sealed record FlowAnswer(MinCostFlowStatus Status, long Cost, long MaximumFlow, long[] Flows);

/// <summary>OR-Tools refused a problem, or answered with a status the project has no word for (NOT_SOLVED, FEASIBLE,
/// BAD_RESULT).</summary>
public sealed class OrToolsRefusedException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="status">OR-Tools' status word, e.g. BAD_RESULT.</param>
    /// <param name="message">What happened, for the user.</param>
    public OrToolsRefusedException(string status, string message) : base(message)
    {
        OrToolsStatus = status;
    }

    /// <summary>OR-Tools' own status word.</summary>
    public string OrToolsStatus { get; }
}

/// <summary>
/// Google OR-Tools' <c>SimpleMinCostFlow</c> (C# <c>Google.OrTools.Graph.MinCostFlow</c>, package Google.OrTools 9.15),
/// in process, on the project's <see cref="FlowProblem"/>: the solver users know, beside the readable reference
/// (<see cref="Reference.Flow.MinCostFlow"/>) and LEMON. Its answer is mapped onto <see cref="MinCostFlowStatus"/>:
/// <list type="bullet">
/// <item>OPTIMAL, INFEASIBLE, UNBALANCED and BAD_COST_RANGE map to the members of the same name. OR-Tools refuses costs
/// with (max|c| + 1)(n' + 1) beyond int64 (n' its internal node count, n + 2 with its super source and sink).</item>
/// <item>NOT_SOLVED, FEASIBLE and BAD_RESULT throw <see cref="OrToolsRefusedException"/> with OR-Tools' word in the
/// message: the project has no such answer.</item>
/// <item>OR-Tools has no capacity-range status and computes flows and the total cost in int64. This wrapper therefore
/// applies the project's capacity rule first (<see cref="MinCostFlowStatus.BadCapacityRange"/>, the same bound as
/// <see cref="Reference.Flow.MinCostFlow"/>), and recomputes the cost exactly from the flows (a total outside int64 is
/// <see cref="MinCostFlowStatus.BadCostRange"/>, as in the reference).</item>
/// </list>
/// OR-Tools checks the balance before anything else (then feasibility, then the cost range), while the reference checks
/// the cost range first: on an instance that is both unbalanced and out of cost range the two name different statuses.
/// OR-Tools gives no potentials; <see cref="FlowPotentials.FromFlow"/> derives certifying ones from any optimal flow.
/// </summary>
public static class OrToolsMinCostFlow
{
    /// <summary>The OR-Tools version this wrapper was written against (the package in paket.dependencies).</summary>
    public const string Version = "9.15.6755";

    /// <summary>Solves with <c>SimpleMinCostFlow::Solve</c>: every supply and demand met exactly.</summary>
    /// <param name="problem">The problem (validated like <see cref="Reference.Flow.MinCostFlow.FromProblem"/>).</param>
    /// <returns>The status and, when optimal, the flows and their exact cost.</returns>
    /// <exception cref="ArgumentException">An array has the wrong length, a node index is out of range, or a capacity is negative.</exception>
    /// <exception cref="OrToolsRefusedException">OR-Tools answered NOT_SOLVED, FEASIBLE or BAD_RESULT.</exception>
    public static FlowAnswer Solve(FlowProblem problem) => Run(problem, maxFlow: false);

    /// <summary>Solves with <c>SimpleMinCostFlow::SolveMaxFlowWithMinCost</c>: a maximum flow from the supplies to the
    /// demands (each met at most), of minimum cost for the split of supplies OR-Tools' maximum flow chose. When the supplies
    /// are at one source and the demands at one sink, as in MaxScore, that is the min-cost maximum flow.</summary>
    /// <param name="problem">The problem.</param>
    /// <returns>The status and, when optimal, the flows, their exact cost and the flow value.</returns>
    /// <exception cref="ArgumentException">An array has the wrong length, a node index is out of range, or a capacity is negative.</exception>
    /// <exception cref="OrToolsRefusedException">OR-Tools answered NOT_SOLVED, FEASIBLE or BAD_RESULT.</exception>
    public static FlowAnswer SolveMaxFlowWithMinCost(FlowProblem problem) => Run(problem, maxFlow: true);

    /// <summary>Maps an OR-Tools status onto the project's, or throws for one the project has no word for.</summary>
    /// <param name="status">OR-Tools' status.</param>
    /// <returns>The project's status.</returns>
    /// <exception cref="OrToolsRefusedException">NOT_SOLVED, FEASIBLE, BAD_RESULT, or an unknown value.</exception>
    public static MinCostFlowStatus MapStatus(MinCostFlowBase.Status status) => status switch
    {
        MinCostFlowBase.Status.OPTIMAL => MinCostFlowStatus.Optimal,
        MinCostFlowBase.Status.INFEASIBLE => MinCostFlowStatus.Infeasible,
        MinCostFlowBase.Status.UNBALANCED => MinCostFlowStatus.Unbalanced,
        MinCostFlowBase.Status.BAD_COST_RANGE => MinCostFlowStatus.BadCostRange,
        _ => throw new OrToolsRefusedException(status.ToString(),
            $"OR-Tools {Version} SimpleMinCostFlow answered {status}, which has no counterpart among the project's statuses " +
            "(OPTIMAL, INFEASIBLE, UNBALANCED, BAD_COST_RANGE): it did not solve the problem"),
    };

    private static FlowAnswer Run(FlowProblem problem, bool maxFlow)
    {
        ArgumentNullException.ThrowIfNull(problem);
        int n = problem.NodeCount, m = problem.ArcCount;
        Validate(problem);
        if (CapacityOutOfRange(problem)) return Failed(MinCostFlowStatus.BadCapacityRange, m);
        if (n == 0) return new FlowAnswer(MinCostFlowStatus.Optimal, 0, 0, new long[m]);

        using var solver = new Google.OrTools.Graph.MinCostFlow(n, m);
        for (int a = 0; a < m; a++)
        {
            int index = solver.AddArcWithCapacityAndUnitCost(problem.Tails[a], problem.Heads[a], problem.Capacities[a], problem.UnitCosts[a]);
            if (index != a) throw new InvalidOperationException($"OR-Tools numbered arc {a} as {index}");
        }
        for (int v = 0; v < n; v++) solver.SetNodeSupply(v, problem.Supplies[v]); // every node, so OR-Tools sees all n
        var status = MapStatus(maxFlow ? solver.SolveMaxFlowWithMinCost() : solver.Solve());
        if (status != MinCostFlowStatus.Optimal) return Failed(status, m);

        var flows = new long[m];
        BigInteger cost = BigInteger.Zero;
        for (int a = 0; a < m; a++)
        {
            flows[a] = solver.Flow(a);
            cost += new BigInteger(flows[a]) * problem.UnitCosts[a];
        }
        if (cost > long.MaxValue || cost < long.MinValue) return Failed(MinCostFlowStatus.BadCostRange, m);
        return new FlowAnswer(MinCostFlowStatus.Optimal, (long)cost, solver.MaximumFlow(), flows);
    }

    /// <summary>The project's capacity rule (<see cref="MinCostFlowStatus.BadCapacityRange"/>): the positive or the negative
    /// supplies sum beyond int64, or some node's |supply| plus the capacities of the arcs at it does.</summary>
    /// <param name="problem">A validated problem.</param>
    /// <returns>True when the capacities or supplies are out of range.</returns>
    public static bool CapacityOutOfRange(FlowProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        int n = problem.NodeCount;
        var load = new Int128[n];
        Int128 totalSupply = 0, totalDemand = 0;
        for (int v = 0; v < n; v++)
        {
            load[v] = Int128.Abs(problem.Supplies[v]);
            if (problem.Supplies[v] > 0) totalSupply += problem.Supplies[v];
            else totalDemand -= problem.Supplies[v];
        }
        for (int a = 0; a < problem.ArcCount; a++)
        {
            load[problem.Tails[a]] += problem.Capacities[a];
            load[problem.Heads[a]] += problem.Capacities[a];
        }
        return totalSupply > long.MaxValue || totalDemand > long.MaxValue || load.Any(l => l > long.MaxValue);
    }

    /// <summary>The project's cost rule checked before solving (<see cref="MinCostFlowStatus.BadCostRange"/>):
    /// max_a |c(a)| (n + 1) beyond int64.</summary>
    /// <param name="problem">A validated problem.</param>
    /// <returns>True when the costs are out of range.</returns>
    public static bool CostOutOfRange(FlowProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        Int128 maxAbsCost = 0;
        foreach (long c in problem.UnitCosts) maxAbsCost = Int128.Max(maxAbsCost, Int128.Abs(c));
        return maxAbsCost * (problem.NodeCount + 1) > long.MaxValue;
    }

    internal static void Validate(FlowProblem problem)
    {
        int n = problem.NodeCount, m = problem.Tails.Length;
        if (n < 0) throw new ArgumentException($"NodeCount is {n}, must be >= 0", nameof(problem));
        if (problem.Heads.Length != m || problem.Capacities.Length != m || problem.UnitCosts.Length != m)
            throw new ArgumentException("Tails, Heads, Capacities and UnitCosts must have the same length", nameof(problem));
        if (problem.Supplies.Length != n)
            throw new ArgumentException($"Supplies has length {problem.Supplies.Length}, NodeCount is {n}", nameof(problem));
        for (int a = 0; a < m; a++)
        {
            if ((uint)problem.Tails[a] >= (uint)n || (uint)problem.Heads[a] >= (uint)n)
                throw new ArgumentException($"arc {a} ({problem.Tails[a]} -> {problem.Heads[a]}) names a node outside 0..{n - 1}", nameof(problem));
            if (problem.Capacities[a] < 0)
                throw new ArgumentException($"arc {a}: capacity {problem.Capacities[a]} is negative", nameof(problem));
        }
    }

    private static FlowAnswer Failed(MinCostFlowStatus status, int m) => new(status, 0, 0, new long[m]);
}
