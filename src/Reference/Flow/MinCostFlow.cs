using System.Numerics;

namespace Reference.Flow;

/// <summary>
/// Minimum-cost flow with integer (int64) capacities, costs and supplies, mirroring OR-Tools'
/// <c>SimpleMinCostFlow</c> (operations_research, ortools/graph/min_cost_flow.h): build the network with
/// <see cref="AddArc"/> and <see cref="SetNodeSupply"/>, call <see cref="Solve"/> or
/// <see cref="SolveMaxFlowWithMinCost"/>, read <see cref="Flow"/>, <see cref="OptimalCost"/>,
/// <see cref="MaximumFlow"/> and the dual <see cref="Potential"/>.
/// <para>The problem (x[a] the flow on arc a, b(v) the supply of node v, negative for a demand):</para>
/// <code>
///   minimize   sum_a c(a) x[a]
///   subject to sum_{a leaves v} x[a] - sum_{a enters v} x[a] = b(v)     for every node v
///              0 &lt;= x[a] &lt;= u(a)                                      for every arc a
/// </code>
/// Nodes are 0..n-1 where n is one more than the largest node index used by an arc or a supply.
/// Negative costs, negative cycles, self-loops and parallel arcs are all allowed (every capacity is finite, so the
/// optimum always exists when a feasible flow does).
/// <para><b>Algorithm</b> (successive shortest paths with node potentials; Ahuja, Magnanti and Orlin,
/// <i>Network Flows</i>, 1993, sections 9.7 and 9.8), written to be read rather than to be fast:</para>
/// <list type="number">
/// <item>Reject ranges where 64-bit answers could overflow (<see cref="MinCostFlowStatus.BadCostRange"/>,
/// <see cref="MinCostFlowStatus.BadCapacityRange"/>).</item>
/// <item>Add a super source S with an arc S→v of capacity b(v) to every supply node and a super sink T with an arc
/// v→T of capacity -b(v) from every demand node (cost 0).</item>
/// <item>Saturate every arc of negative cost. Now every residual arc has cost &gt;= 0, so potential 0 is valid,
/// but the saturation left excesses and deficits at nodes.</item>
/// <item>Route those excesses back to the deficits along shortest paths (always possible: each can at worst undo its
/// own saturation). The result is a minimum-cost circulation.</item>
/// <item>Augment from S to T along shortest paths until T is unreachable. Each shortest path is found by Dijkstra
/// on reduced costs, which the potentials keep non-negative; after each path the potentials absorb the distances,
/// and every path whose arcs then all have reduced cost 0 is a shortest path too, pushed without another Dijkstra.
/// The flow is then of minimum cost among flows of its value, and its value is the maximum.</item>
/// <item>Read flows and cost; recompute clean potentials (bounded by (n+1)·max|c|) from the final residual network.</item>
/// </list>
/// <para><b>Potentials (sign convention).</b> After <see cref="MinCostFlowStatus.Optimal"/>, the potential p(v) is a
/// dual solution of the linear program above: every residual arc (u→v with x &lt; capacity, or the reverse v→u of an arc
/// u→v with x &gt; 0, whose cost is -c) has non-negative reduced cost</para>
/// <code>  c(u,v) - p(u) + p(v) &gt;= 0,</code>
/// <para>which proves optimality (see <see cref="FlowCertificate"/> and proofs/min-cost-flow.md). Concretely
/// p(v) = -(the length of a shortest residual path to v from a virtual root joined to every node by a zero-cost arc),
/// so 0 &lt;= p(v) &lt;= (n+1)·max|c|. (LEMON's potentials pi use the opposite sign: cost + pi(u) - pi(v) &gt;= 0.)</para>
/// <para>Differences from OR-Tools, on purpose: after a non-optimal status every reading is 0 (OR-Tools leaves them
/// undefined); <see cref="SolveMaxFlowWithMinCost"/> minimizes the cost over all maximum flows (OR-Tools first fixes
/// how much each node sends from one maximum flow, then minimizes the cost for that split only); the optimal total cost
/// must fit in int64 or the status is <see cref="MinCostFlowStatus.BadCostRange"/>. The algorithm is deterministic,
/// but among several optimal flows it may pick a different one than OR-Tools would.</para>
/// </summary>
public sealed class MinCostFlow
{
    // ---- The problem, as added. ----
    private readonly List<int> tails = [];
    private readonly List<int> heads = [];
    private readonly List<long> capacities = [];
    private readonly List<long> unitCosts = [];
    private readonly List<long> supplies = []; // one per node; its length is the node count n

    // ---- The last solution (all zero unless Status is Optimal). ----
    private long[] flows = [];
    private long[] potentials = [];
    private long optimalCost;
    private long maximumFlow;

    /// <summary>The largest node index accepted, so that n + 2 nodes (with S and T) still fit in an <c>int</c>.</summary>
    public const int MaxNodeIndex = int.MaxValue - 3;

    /// <summary>Creates an empty network: no nodes, no arcs, status <see cref="MinCostFlowStatus.NotSolved"/>.</summary>
    public MinCostFlow()
    {
    }

    /// <summary>
    /// Creates a network holding the given problem: arcs added in order (so arc indices agree), then supplies set.
    /// </summary>
    /// <param name="problem">The problem; its arrays must have matching lengths and valid node indices.</param>
    /// <exception cref="ArgumentException">An array has the wrong length, a node index is out of range, or a capacity is negative.</exception>
    public static MinCostFlow FromProblem(FlowProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        int m = problem.Tails.Length;
        if (problem.NodeCount < 0)
            throw new ArgumentException($"NodeCount is {problem.NodeCount}, must be >= 0", nameof(problem));
        if (problem.Heads.Length != m || problem.Capacities.Length != m || problem.UnitCosts.Length != m)
        {
            throw new ArgumentException(
                $"Tails, Heads, Capacities, UnitCosts must have one length; got {m}, {problem.Heads.Length}, " +
                $"{problem.Capacities.Length}, {problem.UnitCosts.Length}", nameof(problem));
        }

        if (problem.Supplies.Length != problem.NodeCount)
        {
            throw new ArgumentException(
                $"Supplies has length {problem.Supplies.Length}, NodeCount is {problem.NodeCount}", nameof(problem));
        }

        var network = new MinCostFlow();
        for (int a = 0; a < m; a++)
        {
            if (problem.Tails[a] >= problem.NodeCount || problem.Heads[a] >= problem.NodeCount)
            {
                throw new ArgumentException(
                    $"arc {a} ({problem.Tails[a]} -> {problem.Heads[a]}) uses a node >= NodeCount {problem.NodeCount}", nameof(problem));
            }

            network.AddArc(problem.Tails[a], problem.Heads[a], problem.Capacities[a], problem.UnitCosts[a]);
        }
        if (problem.NodeCount > 0) network.EnsureNode(problem.NodeCount - 1);
        for (int v = 0; v < problem.NodeCount; v++) network.SetNodeSupply(v, problem.Supplies[v]);
        return network;
    }

    /// <summary>The current problem as a <see cref="FlowProblem"/> (fresh arrays; node count <see cref="NumNodes"/>).</summary>
    public FlowProblem ToProblem() =>
        new(NumNodes, [.. tails], [.. heads], [.. capacities], [.. unitCosts], [.. supplies]);

    /// <summary>
    /// Adds the arc tail→head with the given capacity and unit cost; returns its index (0, 1, 2, ... in order of addition).
    /// Nodes are created as needed. Self-loops and parallel arcs are allowed.
    /// </summary>
    /// <param name="tail">The node the arc leaves, 0..<see cref="MaxNodeIndex"/>.</param>
    /// <param name="head">The node the arc enters, 0..<see cref="MaxNodeIndex"/>.</param>
    /// <param name="capacity">The most flow the arc carries, &gt;= 0.</param>
    /// <param name="unitCost">The cost per unit of flow, any int64 (ranges that could overflow give
    /// <see cref="MinCostFlowStatus.BadCostRange"/> at solve time rather than an exception here).</param>
    /// <returns>The new arc's index; afterwards <see cref="NumArcs"/> equals it plus one.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A node index outside 0..<see cref="MaxNodeIndex"/>, or a negative capacity.</exception>
    public int AddArc(int tail, int head, long capacity, long unitCost)
    {
        CheckNodeIndex(tail, nameof(tail));
        CheckNodeIndex(head, nameof(head));
        if (capacity < 0)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"arc {tails.Count}: capacity must be >= 0");
        EnsureNode(Math.Max(tail, head));
        tails.Add(tail);
        heads.Add(head);
        capacities.Add(capacity);
        unitCosts.Add(unitCost);
        ClearSolution();
        return tails.Count - 1;
    }

    /// <summary>Sets the supply of a node (negative for a demand), creating the node if needed. The default supply is 0.</summary>
    /// <param name="node">The node, 0..<see cref="MaxNodeIndex"/>.</param>
    /// <param name="supply">Units the node sends out net (negative: units it absorbs).</param>
    /// <exception cref="ArgumentOutOfRangeException">The node index is out of range.</exception>
    public void SetNodeSupply(int node, long supply)
    {
        CheckNodeIndex(node, nameof(node));
        EnsureNode(node);
        supplies[node] = supply;
        ClearSolution();
    }

    /// <summary>n: one more than the largest node index seen by <see cref="AddArc"/> or <see cref="SetNodeSupply"/>.</summary>
    public int NumNodes => supplies.Count;

    /// <summary>m: the number of arcs added.</summary>
    public int NumArcs => tails.Count;

    /// <summary>The node arc <paramref name="arc"/> leaves.</summary>
    /// <param name="arc">An arc index, 0..<see cref="NumArcs"/>-1.</param>
    public int Tail(int arc) => tails[CheckArc(arc)];

    /// <summary>The node arc <paramref name="arc"/> enters.</summary>
    /// <param name="arc">An arc index, 0..<see cref="NumArcs"/>-1.</param>
    public int Head(int arc) => heads[CheckArc(arc)];

    /// <summary>The capacity u(a) of an arc.</summary>
    /// <param name="arc">An arc index, 0..<see cref="NumArcs"/>-1.</param>
    public long Capacity(int arc) => capacities[CheckArc(arc)];

    /// <summary>The unit cost c(a) of an arc.</summary>
    /// <param name="arc">An arc index, 0..<see cref="NumArcs"/>-1.</param>
    public long UnitCost(int arc) => unitCosts[CheckArc(arc)];

    /// <summary>The supply b(v) of a node (0 unless set).</summary>
    /// <param name="node">A node index, 0..<see cref="NumNodes"/>-1.</param>
    public long Supply(int node)
    {
        if ((uint)node >= (uint)supplies.Count)
            throw new ArgumentOutOfRangeException(nameof(node), node, $"node must be in 0..{supplies.Count - 1}");
        return supplies[node];
    }

    /// <summary>The status of the last solve (<see cref="MinCostFlowStatus.NotSolved"/> if none, or if the problem changed since).</summary>
    public MinCostFlowStatus Status { get; private set; } = MinCostFlowStatus.NotSolved;

    /// <summary>The flow x[a] on an arc after an optimal solve; 0 otherwise.</summary>
    /// <param name="arc">An arc index, 0..<see cref="NumArcs"/>-1.</param>
    public long Flow(int arc)
    {
        CheckArc(arc);
        return Status == MinCostFlowStatus.Optimal ? flows[arc] : 0;
    }

    /// <summary>All flows x[0..m-1] (a fresh array; all zero unless the status is optimal).</summary>
    public long[] Flows() => Status == MinCostFlowStatus.Optimal ? [.. flows] : new long[NumArcs];

    /// <summary>The total cost sum_a c(a) x[a] of the optimal flow; 0 unless the status is optimal.</summary>
    public long OptimalCost() => Status == MinCostFlowStatus.Optimal ? optimalCost : 0;

    /// <summary>
    /// The value of the optimal flow: the total amount sent out of the supply nodes (for <see cref="Solve"/>, the
    /// total supply; for <see cref="SolveMaxFlowWithMinCost"/>, the maximum flow). 0 unless the status is optimal.
    /// </summary>
    public long MaximumFlow() => Status == MinCostFlowStatus.Optimal ? maximumFlow : 0;

    /// <summary>
    /// The dual value p(v) of a node after an optimal solve (0 otherwise): every residual arc u→v has
    /// c(u,v) - p(u) + p(v) &gt;= 0. See the class remarks for the sign convention and range.
    /// </summary>
    /// <param name="node">A node index, 0..<see cref="NumNodes"/>-1.</param>
    public long Potential(int node)
    {
        Supply(node); // range check
        return Status == MinCostFlowStatus.Optimal ? potentials[node] : 0;
    }

    /// <summary>All potentials p[0..n-1] (a fresh array; all zero unless the status is optimal).</summary>
    public long[] Potentials() => Status == MinCostFlowStatus.Optimal ? [.. potentials] : new long[NumNodes];

    /// <summary>
    /// Finds a flow that meets every supply and demand exactly, within the capacities, at minimum total cost.
    /// Statuses: <see cref="MinCostFlowStatus.BadCostRange"/>, <see cref="MinCostFlowStatus.BadCapacityRange"/>,
    /// then <see cref="MinCostFlowStatus.Unbalanced"/> when sum_v b(v) != 0, then
    /// <see cref="MinCostFlowStatus.Infeasible"/> when the network cannot carry the supplies, else
    /// <see cref="MinCostFlowStatus.Optimal"/>. An empty network is optimal with cost 0.
    /// </summary>
    /// <returns>The status, also kept in <see cref="Status"/>.</returns>
    public MinCostFlowStatus Solve() => Run(requireAllSupplies: true);

    /// <summary>
    /// Like <see cref="Solve"/> without the requirement that every supply and demand be met exactly: each supply node v
    /// sends out between 0 and b(v) net, each demand node absorbs between 0 and -b(v) net, every other node conserves
    /// flow. Among such flows, finds one of maximum value (total sent by the supply nodes, <see cref="MaximumFlow"/>)
    /// and, among those, of minimum cost. No balance check; the status is <see cref="MinCostFlowStatus.Optimal"/> unless
    /// a range check fails. The potentials certify the flow for the supplies it actually realizes.
    /// </summary>
    /// <returns>The status, also kept in <see cref="Status"/>.</returns>
    public MinCostFlowStatus SolveMaxFlowWithMinCost() => Run(requireAllSupplies: false);

    // ======================================================================================
    // The solver.
    // ======================================================================================

    private MinCostFlowStatus Run(bool requireAllSupplies)
    {
        ClearSolution();
        int n = NumNodes;
        int m = NumArcs;

        // Step 1: range checks, in exact arithmetic, before any int64 arithmetic can overflow.
        // 1a. Costs: every potential is bounded by (n + 1) * max|c| (a simple path in the network with S and T has at
        //     most n + 1 arcs), so that product must fit.
        Int128 maxAbsCost = 0;
        for (int a = 0; a < m; a++) maxAbsCost = Int128.Max(maxAbsCost, Int128.Abs(unitCosts[a]));
        if (maxAbsCost * (n + 1) > long.MaxValue) return Finish(MinCostFlowStatus.BadCostRange);

        // 1b. Capacities and supplies: every excess the algorithm holds at v is bounded by
        //     |b(v)| + (capacity out of v) + (capacity into v); S holds at most the total supply, T the total demand.
        var load = new Int128[n];
        Int128 totalSupply = 0, totalDemand = 0;
        for (int v = 0; v < n; v++)
        {
            load[v] = Int128.Abs(supplies[v]);
            if (supplies[v] > 0) totalSupply += supplies[v];
            else totalDemand -= supplies[v];
        }
        for (int a = 0; a < m; a++)
        {
            load[tails[a]] += capacities[a];
            load[heads[a]] += capacities[a];
        }
        if (totalSupply > long.MaxValue || totalDemand > long.MaxValue) return Finish(MinCostFlowStatus.BadCapacityRange);
        for (int v = 0; v < n; v++)
            if (load[v] > long.MaxValue) return Finish(MinCostFlowStatus.BadCapacityRange);

        // 1c. Balance (Solve only).
        if (requireAllSupplies && totalSupply != totalDemand) return Finish(MinCostFlowStatus.Unbalanced);

        // Step 2: the residual network over n + 2 nodes: arcs 0..m-1 as given, then S -> v for every supply node and
        //         v -> T for every demand node, at cost 0.
        int source = n, sink = n + 1;
        var g = new ResidualNetwork(n + 2);
        for (int a = 0; a < m; a++) g.AddArc(tails[a], heads[a], capacities[a], unitCosts[a]);
        for (int v = 0; v < n; v++)
        {
            if (supplies[v] > 0) g.AddArc(source, v, supplies[v], 0);
            else if (supplies[v] < 0) g.AddArc(v, sink, -supplies[v], 0);
        }

        // Step 3: saturate every negative-cost arc (a negative self-loop included). Its residual is then only the reverse
        //         arc, of cost -c > 0, so every residual arc costs >= 0 and the zero potential is valid.
        //         Saturating arc u -> v by u(a) leaves excess u(a) at v and a deficit of u(a) at u.
        var excess = new long[n + 2];
        for (int a = 0; a < m; a++)
        {
            if (unitCosts[a] >= 0 || capacities[a] == 0) continue;
            g.Push(ResidualNetwork.Forward(a), capacities[a]);
            excess[heads[a]] += capacities[a];
            excess[tails[a]] -= capacities[a];
        }
        var potential = new Int128[n + 2]; // p, with reduced cost c(u,v) - p(u) + p(v) >= 0 on every residual arc

        // Step 4: route the saturation's excesses back to its deficits along shortest paths. This always finishes:
        //         an excess at v came from some saturated arc into v, whose reverse residual arc can carry it back.
        SuccessiveShortestPaths(g, excess, potential);
        for (int v = 0; v < n + 2; v++)
            if (excess[v] != 0) throw new InvalidOperationException($"internal error: excess {excess[v]} left at node {v} after rebalancing");

        // Step 5: now send flow from S to T along shortest paths until T is unreachable (or S has sent everything).
        excess[source] = (long)totalSupply;
        excess[sink] = -(long)totalDemand;
        Int128 sent = SuccessiveShortestPaths(g, excess, potential);
        if (requireAllSupplies && sent != totalSupply) return Finish(MinCostFlowStatus.Infeasible);

        // Step 6: read flows and cost (exactly; a cost beyond int64 is a range error, not a wrong answer).
        var x = new long[m];
        BigInteger cost = BigInteger.Zero;
        for (int a = 0; a < m; a++)
        {
            x[a] = capacities[a] - g.ResidualCapacity(ResidualNetwork.Forward(a));
            cost += new BigInteger(x[a]) * unitCosts[a];
        }
        if (cost > long.MaxValue || cost < long.MinValue) return Finish(MinCostFlowStatus.BadCostRange);

        // Step 7: clean potentials. The working potentials are valid but may have drifted far; recompute them as minus the
        //         shortest residual distance from a virtual root with a zero-cost arc to every node (so they lie in
        //         0..(n+1)·max|c|). Dijkstra still works on reduced costs: start every node v at label p(v) - min p >= 0
        //         (the reduced cost of the root's arc), and the true distance is label + min p - p(v).
        Int128 minPotential = potential.Min();
        var startLabels = new Int128?[n + 2];
        for (int v = 0; v < n + 2; v++) startLabels[v] = potential[v] - minPotential;
        var (label, _, _) = Dijkstra(g, potential, startLabels);
        var p = new long[n];
        for (int v = 0; v < n; v++)
        {
            Int128 distance = label[v]!.Value + minPotential - potential[v];
            p[v] = checked((long)(-distance));
        }

        flows = x;
        potentials = p;
        optimalCost = (long)cost;
        maximumFlow = (long)sent;
        return Finish(MinCostFlowStatus.Optimal);
    }

    /// <summary>
    /// Moves excess to deficits along shortest residual paths until no node has excess or no deficit is reachable from
    /// one. Keeps the invariant that every residual arc has non-negative reduced cost. Returns the total amount moved.
    /// </summary>
    private static Int128 SuccessiveShortestPaths(ResidualNetwork g, long[] excess, Int128[] potential)
    {
        int nodeCount = g.NodeCount;
        Int128 moved = 0;
        int backoff = 0, wait = 0; // step (f) pays off with ties (integer costs); after fruitless searches it pauses, doubling
        while (true)
        {
            // (a) Start a Dijkstra at every node with excess (label 0): the distance to v is then the reduced length of
            //     a shortest path to v from any excess node.
            var start = new Int128?[nodeCount];
            bool anyExcess = false;
            for (int v = 0; v < nodeCount; v++)
                if (excess[v] > 0) { start[v] = 0; anyExcess = true; }
            if (!anyExcess) return moved;
            // (b) Dijkstra stops at the first deficit node it settles, the nearest one (among equally near ones, the first
            //     in its (distance, index) order). None reachable: done.
            var (distance, predecessorArc, target) = Dijkstra(g, potential, start, stopAtDeficitOf: excess);
            if (target < 0) return moved;

            // (c), (d) Push along the path back to the excess node it starts at.
            moved += PushAlongPath(g, excess, predecessorArc, target);

            // (e) Update potentials: p(v) -= min(dist(v), dist(target)), unreachable nodes counting as dist(target).
            //     Reduced costs stay >= 0 (dist is a shortest-path labelling; capping at a constant keeps that), and the
            //     arcs of the path get reduced cost 0, so their new reverse arcs are fine too. Nodes Dijkstra did not
            //     settle before it stopped have labels >= dist(target), so they count as dist(target) as well.
            Int128 cap = distance[target]!.Value;
            for (int v = 0; v < nodeCount; v++)
            {
                Int128 dv = distance[v] is { } d && d < cap ? d : cap;
                potential[v] = checked(potential[v] - dv);
            }

            // (f) Every residual path of reduced cost 0 from an excess to a deficit is now a shortest path too (no path is
            //     shorter than 0), so push along such paths before the next Dijkstra. This only saves Dijkstra runs, which
            //     happens when distances tie; when a search moves nothing, the next 1, 2, 4, ... phases skip it.
            if (wait > 0)
            {
                wait--;
            }
            else
            {
                Int128 extra = PushAlongTightPaths(g, excess, potential);
                moved += extra;
                backoff = extra > 0 ? 0 : Math.Max(1, 2 * backoff);
                wait = backoff;
            }
        }
    }

    /// <summary>
    /// Pushes along the path that <paramref name="arcInto"/> records back from <paramref name="target"/> (to the node whose
    /// entry is -1, the origin) as much as the origin's excess, the target's deficit and every residual capacity on the way
    /// allow, and updates both excesses. Returns the amount.
    /// </summary>
    private static long PushAlongPath(ResidualNetwork g, long[] excess, int[] arcInto, int target)
    {
        long amount = -excess[target];
        int node = target;
        for (; arcInto[node] >= 0; node = g.TailOf(arcInto[node]))
            amount = Math.Min(amount, g.ResidualCapacity(arcInto[node]));
        int origin = node;
        amount = Math.Min(amount, excess[origin]);
        for (node = target; arcInto[node] >= 0; node = g.TailOf(arcInto[node]))
            g.Push(arcInto[node], amount);
        excess[origin] -= amount;
        excess[target] += amount;
        return amount;
    }

    /// <summary>
    /// Pushes excess to deficits along residual paths whose arcs all have reduced cost 0 (potentials unchanged), found by
    /// depth-first search, until no such path is left. A search that fails marks every node it reached as dead: no tight
    /// arc leaves that set and it holds no deficit, and later pushes change arcs only along their own paths, which cannot
    /// enter the set (they would then stay in it and end at a deficit inside), so it stays so. Returns the amount moved.
    /// </summary>
    private static Int128 PushAlongTightPaths(ResidualNetwork g, long[] excess, Int128[] potential)
    {
        int nodeCount = g.NodeCount;
        var dead = new bool[nodeCount];
        var seen = new int[nodeCount];   // the search that last reached each node (searches are numbered from 1)
        var enteredBy = new int[nodeCount];
        var next = new int[nodeCount];   // per node on the search path: the next out-arc to try
        var path = new Stack<int>();     // nodes of the search path, the origin first
        int search = 0;
        Int128 moved = 0;
        // The arcs of reduced cost 0 out of each node, listed when the node is first reached (potentials do not change
        // here, so neither does this list; only residual capacities do, and they are checked at each step).
        var tight = new List<int>?[nodeCount];
        List<int> TightArcs(int u) =>
            tight[u] ??= g.OutArcs(u).Where(e => g.CostOf(e) - potential[u] + potential[g.HeadOf(e)] == 0).ToList();
        for (int origin = 0; origin < nodeCount; origin++)
        {
            while (excess[origin] > 0 && !dead[origin])
            {
                search++;
                path.Clear();
                path.Push(origin);
                seen[origin] = search;
                enteredBy[origin] = -1;
                next[origin] = 0;
                var reached = new List<int> { origin };
                int found = -1;
                while (path.Count > 0 && found < 0)
                {
                    int u = path.Peek();
                    var arcs = TightArcs(u);
                    int advanced = -1;
                    while (next[u] < arcs.Count && advanced < 0)
                    {
                        int e = arcs[next[u]++];
                        int v = g.HeadOf(e);
                        if (!dead[v] && seen[v] != search && g.ResidualCapacity(e) > 0)
                        {
                            advanced = v;
                            seen[v] = search;
                            enteredBy[v] = e;
                            next[v] = 0;
                            reached.Add(v);
                        }
                    }
                    if (advanced < 0)
                    {
                        path.Pop();
                    }
                    else if (excess[advanced] < 0)
                    {
                        found = advanced;
                    }
                    else
                    {
                        path.Push(advanced);
                    }
                }
                if (found < 0)
                {
                    foreach (int v in reached)
                    {
                        dead[v] = true;
                    }
                    break;
                }
                moved += PushAlongPath(g, excess, enteredBy, found);
            }
        }
        return moved;
    }

    /// <summary>
    /// Dijkstra on reduced costs c(u,v) - p(u) + p(v) (all >= 0) from several start nodes with given start labels
    /// (null: not a start). Returns the label of every node (null if unreachable) and the residual arc that reached it
    /// (-1 for start nodes and unreachable ones). Ties are broken by the lower node index, so the run is deterministic.
    /// With <paramref name="stopAtDeficitOf"/>, it stops once it settles a node v with stopAtDeficitOf[v] &lt; 0 and returns
    /// it as Stopped (labels of nodes not yet settled are then only upper bounds, all >= that node's); otherwise Stopped
    /// is -1 and every label is a distance.
    /// </summary>
    private static (Int128?[] Distance, int[] PredecessorArc, int Stopped) Dijkstra(ResidualNetwork g, Int128[] potential, Int128?[] start,
        long[]? stopAtDeficitOf = null)
    {
        int nodeCount = g.NodeCount;
        var distance = new Int128?[nodeCount];
        var predecessorArc = new int[nodeCount];
        var done = new bool[nodeCount];
        var queue = new PriorityQueue<int, (Int128 Distance, int Node)>();
        for (int v = 0; v < nodeCount; v++)
        {
            predecessorArc[v] = -1;
            if (start[v] is { } s)
            {
                distance[v] = s;
                queue.Enqueue(v, (s, v));
            }
        }
        while (queue.TryDequeue(out int u, out var key))
        {
            if (done[u] || key.Distance != distance[u]) continue; // a stale entry
            done[u] = true;
            if (stopAtDeficitOf is not null && stopAtDeficitOf[u] < 0) return (distance, predecessorArc, u);
            foreach (int e in g.OutArcs(u))
            {
                if (g.ResidualCapacity(e) == 0) continue;
                int v = g.HeadOf(e);
                if (done[v]) continue;
                Int128 reducedCost = checked(g.CostOf(e) - potential[u] + potential[v]);
                if (reducedCost < 0)
                    throw new InvalidOperationException($"internal error: residual arc {u} -> {v} has negative reduced cost {reducedCost}");
                Int128 candidate = checked(key.Distance + reducedCost);
                if (distance[v] is not { } dv || candidate < dv)
                {
                    distance[v] = candidate;
                    predecessorArc[v] = e;
                    queue.Enqueue(v, (candidate, v));
                }
            }
        }
        return (distance, predecessorArc, -1);
    }

    /// <summary>
    /// The residual network: arc a of the (augmented) network is the pair of residual arcs 2a (forward, cost c,
    /// residual capacity u - x) and 2a+1 (backward, cost -c, residual capacity x).
    /// </summary>
    private sealed class ResidualNetwork
    {
        private readonly List<int> head = [];
        private readonly List<long> residual = [];
        private readonly List<long> cost = [];
        private readonly List<int>[] outArcs;

        public ResidualNetwork(int nodeCount)
        {
            NodeCount = nodeCount;
            outArcs = new List<int>[nodeCount];
            for (int v = 0; v < nodeCount; v++) outArcs[v] = [];
        }

        public int NodeCount { get; }

        public static int Forward(int arc) => 2 * arc;

        public void AddArc(int tail, int headNode, long capacity, long unitCost)
        {
            outArcs[tail].Add(head.Count);
            head.Add(headNode);
            residual.Add(capacity);
            cost.Add(unitCost);
            outArcs[headNode].Add(head.Count);
            head.Add(tail);
            residual.Add(0);
            cost.Add(-unitCost); // |unitCost| <= long.MaxValue was checked, so this negation is safe
        }

        public List<int> OutArcs(int node) => outArcs[node];
        public int HeadOf(int e) => head[e];
        public int TailOf(int e) => head[e ^ 1];
        public long CostOf(int e) => cost[e];
        public long ResidualCapacity(int e) => residual[e];

        public void Push(int e, long amount)
        {
            residual[e] -= amount;
            residual[e ^ 1] += amount;
        }
    }

    // ---- Helpers. ----

    private MinCostFlowStatus Finish(MinCostFlowStatus status)
    {
        Status = status;
        if (status != MinCostFlowStatus.Optimal)
        {
            flows = new long[NumArcs];
            potentials = new long[NumNodes];
            optimalCost = 0;
            maximumFlow = 0;
        }
        return status;
    }

    private void ClearSolution()
    {
        Status = MinCostFlowStatus.NotSolved;
        flows = [];
        potentials = [];
        optimalCost = 0;
        maximumFlow = 0;
    }

    private void EnsureNode(int node)
    {
        while (supplies.Count <= node) supplies.Add(0);
    }

    private static void CheckNodeIndex(int node, string paramName)
    {
        if (node < 0 || node > MaxNodeIndex)
            throw new ArgumentOutOfRangeException(paramName, node, $"node index must be in 0..{MaxNodeIndex}");
    }

    private int CheckArc(int arc)
    {
        if ((uint)arc >= (uint)tails.Count)
            throw new ArgumentOutOfRangeException(nameof(arc), arc, $"arc must be in 0..{tails.Count - 1}");
        return arc;
    }
}
