// The MaxScore certificate's optimality check on a feasible routing (from MaxScoreCertificate.Feasibility.cs): the
// contracted residual graph on the experts, the sink z and the source s, whose token arcs are the cheapest exchanges found
// exactly; exact Bellman-Ford either gives potentials, from which Check reads certifying prices (confirmed by
// MaxScoreCertificate.Prices.cs), or a negative cycle, which BestExchange lifts to the token network and splits into
// simple exchanges to report the largest gain. Costs are exact integers at the common scale (MaxScoreCertificate.Grid.cs).

using System.Numerics;
using System.Runtime.InteropServices;

namespace Reference.Harness.Algorithms;

public static partial class MaxScoreCertificate
{
    private sealed partial class Problem
    {
        /// <summary>The contracted residual graph of a feasible membership (nodes: experts, then z, then s).</summary>
        public Contracted Contract(bool[,] x)
        {
            var g = new Contracted(e);
            var count = new int[n];
            var holders = new List<int>[e]; // the tokens on each expert, ascending
            for (int a = 0; a < e; a++)
            {
                holders[a] = [];
            }
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    if (x[i, j])
                    {
                        count[i]++;
                        holders[j].Add(i);
                    }
                }
            }
            // Expert-to-expert exchanges: the cheapest token on a and not on b (ties to the lower token). Subtraction of doubles
            // rounds correctly, and rounding is monotone, so the exact minimum is among the tokens whose rounded key equals the
            // rounded minimum: the scan finds that minimum in doubles, then compares only those tokens exactly.
            var roundedMin = new double[e];
            var best = new BigInteger?[e];
            var token = new int[e];
            for (int a = 0; a < e; a++)
            {
                Array.Fill(roundedMin, double.PositiveInfinity);
                Array.Clear(best);
                foreach (int i in holders[a])
                {
                    var scores = Row(rounded, i);
                    var on = Row(x, i);
                    double from = scores[a];
                    for (int b = 0; b < scores.Length; b++)
                    {
                        double key = from - scores[b];
                        if (key < roundedMin[b] && !on[b])
                        {
                            roundedMin[b] = key;
                        }
                    }
                }
                foreach (int i in holders[a]) // ascending tokens, so a strict comparison keeps the lower token on ties
                {
                    var scores = Row(rounded, i);
                    var on = Row(x, i);
                    for (int b = 0; b < scores.Length; b++)
                    {
                        if (scores[a] - scores[b] != roundedMin[b] || on[b])
                        {
                            continue;
                        }
                        var key = S(i, a) - S(i, b);
                        if (best[b] is not { } known || key < known)
                        {
                            best[b] = key;
                            token[b] = i;
                        }
                    }
                }
                for (int b = 0; b < e; b++)
                {
                    if (best[b] is { } cost)
                    {
                        g.Add(a, b, cost, token[b]);
                    }
                }
            }
            // Capacity arcs through the sink.
            for (int a = 0; a < e; a++)
            {
                if (holders[a].Count < c)
                {
                    g.Add(a, g.SinkNode, BigInteger.Zero, -1);
                }
                if (holders[a].Count > 0)
                {
                    g.Add(g.SinkNode, a, BigInteger.Zero, -1);
                }
            }
            // Arcs through the source: a token below k takes b (cost -S_ib); a token leaves a (cost S_ia). Doubles compare
            // exactly, so the cheapest token is found on them (ties to the lower token) and only its cost is made exact.
            for (int b = 0; b < e; b++)
            {
                int taker = -1, leaver = -1;
                for (int i = 0; i < n; i++)
                {
                    if (count[i] < k && !x[i, b] && (taker < 0 || rounded[i, b] > rounded[taker, b]))
                    {
                        taker = i;
                    }
                    if (x[i, b] && (leaver < 0 || rounded[i, b] < rounded[leaver, b]))
                    {
                        leaver = i;
                    }
                }
                if (taker >= 0)
                {
                    g.Add(g.SourceNode, b, -S(taker, b), taker);
                }
                if (leaver >= 0)
                {
                    g.Add(b, g.SourceNode, S(leaver, b), leaver);
                }
            }
            return g;
        }

        /// <summary>
        /// Lifts a negative contracted cycle to a closed walk in the token network's residual graph, splits the walk into simple
        /// cycles (each one is an exchange the current routing can make on its own), and returns the largest gain among them.
        /// </summary>
        public BigInteger BestExchange(IReadOnlyList<ContractedArc> cycle)
        {
            // Residual nodes: experts 0..E-1, z = E, s = E+1, token i = E+2+i; each step carries its residual cost.
            int Token(int i) => e + 2 + i;
            var walk = new List<int> { cycle[0].From };
            var cost = new List<BigInteger>();
            foreach (var arc in cycle)
            {
                if (arc.Token < 0)
                {
                    walk.Add(arc.To);            // a -> z or z -> a
                    cost.Add(BigInteger.Zero);
                    continue;
                }
                int i = arc.Token;
                // Into the token: the reverse of its arc to expert From (gives back S_i,From), or from the source (cost 0).
                walk.Add(Token(i));
                cost.Add(arc.From == Contracted.Source(e) ? BigInteger.Zero : S(i, arc.From));
                // Out of the token: to expert To (cost -S_i,To), or back to the source (cost 0).
                walk.Add(arc.To);
                cost.Add(arc.To == Contracted.Source(e) ? BigInteger.Zero : -S(i, arc.To));
            }
            // Split the closed walk at repeated nodes (a stack of positions); every piece is a simple residual cycle.
            var best = BigInteger.Zero;
            var stackNodes = new List<int>();
            var stackCosts = new List<BigInteger>(); // cost of the step that entered stackNodes[p], p >= 1
            var position = new Dictionary<int, int>();
            for (int p = 0; p < walk.Count; p++)
            {
                int v = walk[p];
                BigInteger step = p == 0 ? BigInteger.Zero : cost[p - 1];
                if (position.TryGetValue(v, out int at))
                {
                    var cycleCost = step;
                    for (int q = at + 1; q < stackNodes.Count; q++)
                    {
                        cycleCost += stackCosts[q];
                    }
                    if (-cycleCost > best)
                    {
                        best = -cycleCost;
                    }
                    for (int q = stackNodes.Count - 1; q > at; q--)
                    {
                        position.Remove(stackNodes[q]);
                        stackNodes.RemoveAt(q);
                        stackCosts.RemoveAt(q);
                    }
                    continue;
                }
                position[v] = stackNodes.Count;
                stackNodes.Add(v);
                stackCosts.Add(step);
            }
            if (best <= 0)
            {
                throw new InvalidOperationException("internal error: a negative contracted cycle split into no improving exchange");
            }
            return best;
        }

        /// <summary>Row i of a row-major matrix, as a span (a [N, E] array stores its rows one after another).</summary>
        private static ReadOnlySpan<T> Row<T>(T[,] matrix, int i) =>
            MemoryMarshal.CreateReadOnlySpan(ref matrix[i, 0], matrix.GetLength(1));
    }

    /// <summary>One arc of the contracted graph; <c>Token</c> is the token that realizes it, or -1 for a capacity arc.</summary>
    private sealed record ContractedArc(int From, int To, BigInteger Cost, int Token);

    /// <summary>The contracted residual graph: experts 0..E-1, the sink z = E, the source s = E+1.</summary>
    private sealed class Contracted(int experts)
    {
        private readonly List<ContractedArc> arcs = [];

        public int SinkNode => experts;

        public int SourceNode => experts + 1;

        public int Nodes => experts + 2;

        public static int Source(int experts) => experts + 1;

        public void Add(int from, int to, BigInteger cost, int token) => arcs.Add(new ContractedArc(from, to, cost, token));

        /// <summary>
        /// Exact Bellman-Ford from a virtual root joined to every node at cost 0: either the shortest distances d with d(v) &lt;= d(u) + cost(u, v) on every arc, or a negative cycle in arc order.
        /// Distances are integers that only decrease, so without a negative cycle the passes stop; with one, the predecessor graph
        /// eventually holds a cycle, and every cycle of the predecessor graph is negative.
        /// </summary>
        public (BigInteger[]? Distances, IReadOnlyList<ContractedArc>? Cycle) ShortestPathsOrNegativeCycle()
        {
            int v = Nodes;
            var d = new BigInteger[v];          // 0: the root's arcs
            var pred = new ContractedArc?[v];
            for (int pass = 1; ; pass++)
            {
                bool changed = false;
                foreach (var arc in arcs)
                {
                    var candidate = d[arc.From] + arc.Cost;
                    if (candidate < d[arc.To])
                    {
                        d[arc.To] = candidate;
                        pred[arc.To] = arc;
                        changed = true;
                    }
                }
                if (!changed)
                {
                    return (d, null);
                }
                if (pass >= v && FindPredecessorCycle(pred) is { } cycle)
                {
                    return (null, cycle);
                }
            }
        }

        private static List<ContractedArc>? FindPredecessorCycle(ContractedArc?[] pred)
        {
            int v = pred.Length;
            var state = new int[v]; // 0 unvisited, 1 on the current walk, 2 done
            for (int start = 0; start < v; start++)
            {
                var path = new List<int>();
                int u = start;
                while (u >= 0 && state[u] == 0)
                {
                    state[u] = 1;
                    path.Add(u);
                    u = pred[u]?.From ?? -1;
                }
                if (u >= 0 && state[u] == 1)
                {
                    // u is on a cycle of predecessor arcs: collect it backwards, then reverse into arc order.
                    var cycle = new List<ContractedArc>();
                    int w = u;
                    do
                    {
                        var arc = pred[w]!;
                        cycle.Add(arc);
                        w = arc.From;
                    }
                    while (w != u);
                    cycle.Reverse();
                    var total = BigInteger.Zero;
                    foreach (var arc in cycle)
                    {
                        total += arc.Cost;
                    }
                    if (total >= 0)
                    {
                        throw new InvalidOperationException("internal error: a predecessor cycle is not negative");
                    }
                    return cycle;
                }
                foreach (int p in path)
                {
                    state[p] = 2;
                }
            }
            return null;
        }
    }
}
