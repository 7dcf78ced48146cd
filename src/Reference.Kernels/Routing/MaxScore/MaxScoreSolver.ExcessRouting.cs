// Phase 2b of the MaxScore fast solver: excess routing. Successive shortest paths (Dijkstra with potentials) on the
// contracted graph of E experts and the sink move tokens off experts over capacity until the routing is a maximum flow
// of least cost in double arithmetic; the potentials become the prices. Token arcs are read from the pair lists
// (MaxScoreSolver.PairLists.cs), which Move keeps current. Phase 3 (MaxScoreSolver.ExactFinish.cs) then makes the result
// exact.

using System.Numerics;
using System.Runtime.Intrinsics;

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    private sealed partial class State
    {
        /// <summary>
        /// Makes the routing a maximum flow of least cost by successive shortest paths on the contracted graph: nodes are the
        /// experts and the sink z; a token's move from u to v is an arc of cost S_iu - S_iv (the pair lists keep the cheapest);
        /// u -&gt; z carries the flow f_u &lt;= C into the sink and z -&gt; u takes it back. Potentials phi (phi(u) = -lambda_u,
        /// phi(z) = 0 at the start) keep every reduced cost &gt;= 0: token moves because every token holds a top k of
        /// S_i - lambda, and the sink arcs because f_u = C wherever lambda_u &gt; 0 (a priced expert below C is a deficit of
        /// C - load, and z holds the difference). Each round runs Dijkstra from every node with excess to the nearest node
        /// with a deficit, moves one unit along the path and updates phi. Returns the augmentations.
        /// </summary>
        public int RouteExcess()
        {
            int augmentations = 0;
            for (int a = 0; a < e; a++)
            {
                RecomputeRow(a);
            }
            int z = e, nodes = e + 1;
            var phi = new double[nodes];
            var flow = new int[e];               // f_u, the flow u -> z
            long excessZ = -(long)n * k;         // z's inflow minus its demand k N
            for (int a = 0; a < e; a++)
            {
                phi[a] = -lambda[a];
                flow[a] = lambda[a] > 0 ? cap[a] : Math.Min(load[a], cap[a]);
                excessZ += flow[a];
            }
            long Excess(int v) => v == z ? excessZ : load[v] - flow[v];
            int padded = (nodes + 3) & ~3;
            var dist = new double[nodes];
            var pending = new double[padded];   // dist of a node not yet settled, +Inf once settled (and in the padding)
            var parent = new int[nodes];
            var path = new int[nodes];

            // Every arc of the path (target first) has reduced cost 0 and room for one more unit.
            bool Tight(ReadOnlySpan<int> nodesOnPath)
            {
                for (int q = 0; q + 1 < nodesOnPath.Length; q++)
                {
                    int v = nodesOnPath[q], u = nodesOnPath[q + 1];
                    bool room = u == z ? flow[v] > 0 : v == z ? flow[u] < cap[u] : bestToken[u * e + v] >= 0;
                    double cost = u == z || v == z ? 0.0 : best[u * e + v];
                    if (!room || cost + phi[u] - phi[v] > 0)
                    {
                        return false;
                    }
                }
                return true;
            }
            // Relaxes the arc u -> v of the given cost. A settled v is never improved: its distance is at most u's, and
            // u's plus a clipped reduced cost (>= 0) is at least u's, so no test of settledness is needed.
            void Relax(int u, int v, double cost, double from)
            {
                double through = from + Math.Max(0.0, cost + phi[u] - phi[v]);
                if (through < dist[v])
                {
                    dist[v] = through;
                    pending[v] = through;
                    parent[v] = u;
                }
            }
            while (true)
            {
                bool any = false;
                for (int v = 0; v < nodes; v++)
                {
                    dist[v] = Excess(v) > 0 ? 0 : double.PositiveInfinity;
                    any |= Excess(v) > 0;
                    parent[v] = -1;
                }
                if (!any)
                {
                    break;
                }
                dist.CopyTo(pending, 0);
                pending.AsSpan(nodes).Fill(double.PositiveInfinity);
                // Dijkstra (dense: the graph is small and complete) until the first node with a deficit is settled.
                int target = -1;
                for (int step = 0; step < nodes; step++)
                {
                    int u = Nearest(pending);
                    if (u < 0)
                    {
                        break;
                    }
                    double nearest = dist[u];
                    pending[u] = double.PositiveInfinity;
                    if (Excess(u) < 0)
                    {
                        target = u;
                        break;
                    }
                    // Reduced costs are never below 0 in exact arithmetic; rounding is clipped. Arc costs: from z, 0 to an
                    // expert with flow into z; into z, 0 from an expert with room under C; a token move, its pair's best key.
                    if (u == z)
                    {
                        for (int v = 0; v < e; v++)
                        {
                            if (flow[v] > 0)
                            {
                                Relax(z, v, 0.0, nearest);
                            }
                        }
                        continue;
                    }
                    if (flow[u] < cap[u])
                    {
                        Relax(u, z, 0.0, nearest);
                    }
                    int row = u * e, x = 0;
                    if (Vector256.IsHardwareAccelerated)
                    {
                        var from = Vector256.Create(nearest);
                        var shift = Vector256.Create(phi[u]);
                        for (; x + 4 <= e; x += 4)
                        {
                            var reducedCost = Vector256.Create(best.AsSpan(row + x, 4)) + shift - Vector256.Create(phi.AsSpan(x, 4));
                            var through = from + Vector256.Max(Vector256<double>.Zero, reducedCost);
                            var known = Vector256.Create(dist.AsSpan(x, 4));
                            var better = Vector256.LessThan(through, known);
                            uint bits = better.ExtractMostSignificantBits();
                            if (bits == 0)
                            {
                                continue;
                            }
                            Vector256.ConditionalSelect(better, through, known).CopyTo(dist.AsSpan(x, 4));
                            Vector256.ConditionalSelect(better, through, Vector256.Create(pending.AsSpan(x, 4))).CopyTo(pending.AsSpan(x, 4));
                            for (; bits != 0; bits &= bits - 1)
                            {
                                parent[x + BitOperations.TrailingZeroCount(bits)] = u;
                            }
                        }
                    }
                    for (; x < e; x++)
                    {
                        Relax(u, x, best[row + x], nearest);
                    }
                }
                if (target < 0)
                {
                    throw new InvalidOperationException("no deficit is reachable from an excess; C * E >= k * N guarantees one");
                }
                double reach = dist[target];
                for (int v = 0; v < nodes; v++)
                {
                    phi[v] += Math.Min(dist[v], reach);
                }
                // Augment: walk the path back; a token arc moves its token, a sink arc changes f. While the same path stays
                // tight (reduced cost 0 on every arc: ties, e.g. scores on a grid) and its ends still hold excess and deficit,
                // it is still a shortest path, so the next unit follows it without another Dijkstra.
                int length = 0;
                for (int v = target; v >= 0; v = parent[v])
                {
                    path[length++] = v; // target first, source last
                }
                do
                {
                    for (int q = 0; q + 1 < length; q++)
                    {
                        int v = path[q], u = path[q + 1];
                        if (u == z)
                        {
                            flow[v]--;
                            excessZ--;
                        }
                        else if (v == z)
                        {
                            flow[u]++;
                            excessZ++;
                        }
                        else
                        {
                            Move(bestToken[u * e + v], u, v);
                        }
                    }
                    augmentations++;
                }
                while (Excess(path[length - 1]) > 0 && Excess(target) < 0 && Tight(path.AsSpan(0, length)));
            }
            for (int a = 0; a < e; a++)
            {
                lambda[a] = phi[z] - phi[a];
            }
            return augmentations;
        }

        /// <summary>The index of the smallest value (the lowest index among equal ones), or -1 when all are +Inf; the length is
        /// a multiple of 4.</summary>
        private static int Nearest(double[] values)
        {
            int u = -1;
            double nearest = double.PositiveInfinity;
            if (Vector256.IsHardwareAccelerated)
            {
                var least = Vector256.Create(values.AsSpan(0, 4));
                for (int x = 4; x < values.Length; x += 4)
                {
                    least = Vector256.Min(least, Vector256.Create(values.AsSpan(x, 4)));
                }
                nearest = Math.Min(Math.Min(least[0], least[1]), Math.Min(least[2], least[3]));
                if (nearest == double.PositiveInfinity)
                {
                    return -1;
                }
                var wanted = Vector256.Create(nearest);
                for (int x = 0; ; x += 4)
                {
                    uint bits = Vector256.Equals(Vector256.Create(values.AsSpan(x, 4)), wanted).ExtractMostSignificantBits();
                    if (bits != 0)
                    {
                        return x + BitOperations.TrailingZeroCount(bits);
                    }
                }
            }
            for (int v = 0; v < values.Length; v++)
            {
                if (values[v] < nearest)
                {
                    u = v;
                    nearest = values[v];
                }
            }
            return u;
        }
    }
}
