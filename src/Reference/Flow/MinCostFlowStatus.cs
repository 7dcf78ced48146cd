namespace Reference.Flow;

/// <summary>
/// The outcome of <see cref="MinCostFlow.Solve"/> or <see cref="MinCostFlow.SolveMaxFlowWithMinCost"/>, named after
/// OR-Tools' <c>SimpleMinCostFlow::Status</c> (same members, same meanings; OR-Tools' <c>FEASIBLE</c> never occurs
/// there either and is left out). The checks run in the order the members are listed below, from
/// <see cref="BadCostRange"/> on; the first that applies is the status.
/// After any status other than <see cref="Optimal"/>, every flow, the cost, the maximum flow and every potential read 0.
/// </summary>
public enum MinCostFlowStatus
{
    /// <summary>Nothing solved yet, or the problem changed (an arc was added, a supply set) since the last solve.</summary>
    NotSolved,

    /// <summary>
    /// Solved. <c>Solve</c>: a flow meeting every supply and demand exactly, within the capacities, of minimum total cost.
    /// <c>SolveMaxFlowWithMinCost</c>: a flow of maximum value (see there), of minimum cost among those.
    /// Flows, cost, maximum flow and potentials are available.
    /// </summary>
    Optimal,

    /// <summary>
    /// <c>Solve</c> only: the supplies balance, but the network cannot carry them. Precisely, the maximum flow from
    /// a super source joined to every supply node v by an arc of capacity supply(v), to a super sink joined from
    /// every demand node by an arc of capacity -supply(v), is below the total supply.
    /// </summary>
    Infeasible,

    /// <summary><c>Solve</c> only: the supplies do not sum to zero (total supply differs from total demand).</summary>
    Unbalanced,

    /// <summary>
    /// The costs are too large for exact 64-bit answers: max_a |unitCost(a)| * (n + 1) exceeds <see cref="long.MaxValue"/>
    /// (n = number of nodes; this bounds every potential), or the optimal total cost itself does not fit in a
    /// 64-bit signed integer. Checked before anything else.
    /// </summary>
    BadCostRange,

    /// <summary>
    /// The capacities or supplies are too large for exact 64-bit flows: the positive supplies, or the absolute values
    /// of the negative supplies, sum beyond <see cref="long.MaxValue"/>; or at some node v,
    /// |supply(v)| + (sum of capacities of arcs leaving v) + (sum of capacities of arcs entering v) does
    /// (a self-loop counts twice). Those sums bound every excess the algorithm ever holds at a node.
    /// Checked after <see cref="BadCostRange"/>, before <see cref="Unbalanced"/>.
    /// </summary>
    BadCapacityRange,
}
