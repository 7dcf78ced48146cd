using System.Numerics;

namespace Reference.Flow;

/// <summary>What a <see cref="FlowViolation"/> is about.</summary>
public enum FlowViolationKind
{
    /// <summary>An arc's flow is below 0 or above its capacity (<see cref="FlowViolation.Arc"/> is set).</summary>
    CapacityBound,

    /// <summary>A node's net outflow differs from its supply (<see cref="FlowViolation.Node"/> is set).</summary>
    Conservation,

    /// <summary>
    /// A residual arc has negative reduced cost (<see cref="FlowViolation.Arc"/> is set): either x &lt; u and
    /// c - p(tail) + p(head) &lt; 0 (more flow would be cheaper), or x &gt; 0 and c - p(tail) + p(head) &gt; 0
    /// (less flow would be cheaper).
    /// </summary>
    ReducedCost,
}

/// <summary>One failed condition of a flow certificate.</summary>
/// <param name="Kind">Which condition failed.</param>
/// <param name="Arc">The arc concerned, or -1 for a node condition.</param>
/// <param name="Node">The node concerned, or -1 for an arc condition.</param>
/// <param name="Message">A sentence with the numbers involved, e.g. "arc 3 (1 -> 2): flow 5 above capacity 4".</param>
public sealed record FlowViolation(FlowViolationKind Kind, int Arc, int Node, string Message);

/// <summary>
/// The verdict of <see cref="FlowCertificate.Check"/>. Every number is exact (arbitrary precision).
/// </summary>
/// <param name="Valid">True when there is no violation: the flow is feasible and the potentials prove it optimal.
/// Then <see cref="Gap"/> is 0.</param>
/// <param name="Violations">Every failed condition, arcs in index order, then nodes in index order.</param>
/// <param name="PrimalCost">sum_a c(a) x[a], the cost of the given flow.</param>
/// <param name="DualObjective">sum_v b(v) p(v) - sum_a u(a) max(0, -(c(a) - p(tail a) + p(head a))): the value of
/// the LP dual at the given potentials, a lower bound on the cost of every feasible flow, fractional ones included.</param>
/// <param name="Gap">PrimalCost - DualObjective. For a feasible flow it is &gt;= 0, and 0 exactly when the reduced-cost
/// conditions hold.</param>
public sealed record FlowCertificateReport(
    bool Valid,
    IReadOnlyList<FlowViolation> Violations,
    BigInteger PrimalCost,
    BigInteger DualObjective,
    BigInteger Gap);

/// <summary>
/// Checks a claimed optimal min-cost flow (flows plus node potentials) against the problem, in exact integer arithmetic
/// (<see cref="BigInteger"/>, so nothing overflows). It shares no code with <see cref="MinCostFlow"/>.
/// <para>Conditions (x the flows, p the potentials, reduced cost rc(a) = c(a) - p(tail a) + p(head a), the sign
/// convention of <see cref="MinCostFlow.Potential"/>):</para>
/// <list type="number">
/// <item>capacity bounds: 0 &lt;= x[a] &lt;= u(a) for every arc;</item>
/// <item>conservation: sum_{a leaves v} x[a] - sum_{a enters v} x[a] = b(v) for every node;</item>
/// <item>reduced costs: every residual arc has rc &gt;= 0, i.e. x[a] &lt; u(a) implies rc(a) &gt;= 0 and x[a] &gt; 0
/// implies rc(a) &lt;= 0.</item>
/// </list>
/// 1 and 2 make the flow feasible; with 3 it is optimal (the LP duality theorem; see proofs/min-cost-flow.md,
/// theorem flow.certificate). The report also gives the primal cost, the dual objective and their gap.
/// </summary>
public static class FlowCertificate
{
    /// <summary>Checks flows and potentials against a problem. See the class summary for the conditions.</summary>
    /// <param name="problem">The problem: n nodes, m arcs, supplies [n].</param>
    /// <param name="flows">[m] the flow on each arc.</param>
    /// <param name="potentials">[n] the potential p(v) of each node.</param>
    /// <returns>The verdict with every violation, the primal cost, the dual objective and the gap.</returns>
    /// <exception cref="ArgumentException">Array lengths disagree, or an arc names a node outside 0..n-1.</exception>
    public static FlowCertificateReport Check(FlowProblem problem, long[] flows, long[] potentials)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(flows);
        ArgumentNullException.ThrowIfNull(potentials);
        int n = problem.NodeCount;
        int m = problem.Tails.Length;

        // Step 0: shapes and indices.
        if (n < 0) throw new ArgumentException($"NodeCount is {n}, must be >= 0", nameof(problem));
        if (problem.Heads.Length != m || problem.Capacities.Length != m || problem.UnitCosts.Length != m)
            throw new ArgumentException("Tails, Heads, Capacities and UnitCosts must have the same length", nameof(problem));
        if (problem.Supplies.Length != n)
            throw new ArgumentException($"Supplies has length {problem.Supplies.Length}, NodeCount is {n}", nameof(problem));
        if (flows.Length != m) throw new ArgumentException($"flows has length {flows.Length}, the problem has {m} arcs", nameof(flows));
        if (potentials.Length != n) throw new ArgumentException($"potentials has length {potentials.Length}, the problem has {n} nodes", nameof(potentials));
        for (int a = 0; a < m; a++)
        {
            if ((uint)problem.Tails[a] >= (uint)n || (uint)problem.Heads[a] >= (uint)n)
                throw new ArgumentException($"arc {a} ({problem.Tails[a]} -> {problem.Heads[a]}) names a node outside 0..{n - 1}", nameof(problem));
        }

        var violations = new List<FlowViolation>();
        var netOutflow = new BigInteger[n];
        BigInteger primal = BigInteger.Zero;
        BigInteger dual = BigInteger.Zero;

        // Step 1: per arc: bounds, reduced cost, its share of the primal cost and of the dual objective.
        for (int a = 0; a < m; a++)
        {
            int u = problem.Tails[a], v = problem.Heads[a];
            BigInteger x = flows[a], capacity = problem.Capacities[a], c = problem.UnitCosts[a];
            string arcName = $"arc {a} ({u} -> {v})";

            if (x < 0 || x > capacity)
            {
                violations.Add(new FlowViolation(FlowViolationKind.CapacityBound, a, -1,
                    $"{arcName}: flow {x} outside [0, {capacity}]"));
            }

            BigInteger reducedCost = c - potentials[u] + potentials[v];
            if (x < capacity && reducedCost < 0)
            {
                violations.Add(new FlowViolation(FlowViolationKind.ReducedCost, a, -1,
                    $"{arcName}: flow {x} below capacity {capacity} but reduced cost {reducedCost} < 0"));
            }

            if (x > 0 && reducedCost > 0)
            {
                violations.Add(new FlowViolation(FlowViolationKind.ReducedCost, a, -1,
                    $"{arcName}: flow {x} > 0 but reduced cost {reducedCost} > 0"));
            }

            primal += c * x;
            if (reducedCost < 0) dual += capacity * reducedCost; // - u * max(0, -rc)
            netOutflow[u] += x;
            netOutflow[v] -= x;
        }

        // Step 2: per node: conservation, and its share b(v) p(v) of the dual objective.
        for (int v = 0; v < n; v++)
        {
            BigInteger supply = problem.Supplies[v];
            if (netOutflow[v] != supply)
            {
                violations.Add(new FlowViolation(FlowViolationKind.Conservation, -1, v,
                    $"node {v}: net outflow {netOutflow[v]} differs from supply {supply}"));
            }

            dual += supply * potentials[v];
        }

        return new FlowCertificateReport(violations.Count == 0, violations, primal, dual, primal - dual);
    }
}
