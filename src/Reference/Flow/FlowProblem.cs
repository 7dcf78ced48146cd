namespace Reference.Flow;

/// <summary>
/// A min-cost-flow instance as plain data: nodes 0..<see cref="NodeCount"/>-1, arcs 0..m-1 given by four parallel
/// arrays of length m, and one supply per node (negative = demand).
/// <para>The problem (the linear program that <see cref="MinCostFlow"/> solves and <see cref="FlowCertificate"/> checks):</para>
/// <code>
///   minimize   sum_a UnitCosts[a] * x[a]
///   subject to sum_{a: tail a = v} x[a] - sum_{a: head a = v} x[a] = Supplies[v]   for every node v
///              0 &lt;= x[a] &lt;= Capacities[a]                                        for every arc a
/// </code>
/// Self-loops (tail = head) and parallel arcs are allowed; capacities are non-negative; costs may be negative.
/// The record does not validate; the consumers do (they name the offending argument and index).
/// </summary>
/// <param name="NodeCount">n, the number of nodes.</param>
/// <param name="Tails">[m] the node each arc leaves.</param>
/// <param name="Heads">[m] the node each arc enters.</param>
/// <param name="Capacities">[m] the upper bound on each arc's flow, &gt;= 0.</param>
/// <param name="UnitCosts">[m] the cost of one unit of flow on each arc (any sign).</param>
/// <param name="Supplies">[n] the supply of each node; a demand is a negative supply.</param>
public sealed record FlowProblem(
    int NodeCount,
    int[] Tails,
    int[] Heads,
    long[] Capacities,
    long[] UnitCosts,
    long[] Supplies)
{
    /// <summary>m, the number of arcs (the length of <see cref="Tails"/>).</summary>
    public int ArcCount => Tails.Length;
}
