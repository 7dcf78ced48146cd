// Phase 3 of the MaxScore fast solver: the exact finish. The scores become exact integers (MaxScoreExact.cs), in Int128
// when a bound proves it wide enough, else BigInteger; exact Bellman-Ford on the contracted graph built from the pair
// lists (MaxScoreSolver.PairLists.cs) either finds a negative cycle, which is canceled by moving its tokens, or
// potentials, which are then checked exactly against every token. With no cycle and no violation the routing is optimal
// and the potentials give the exact prices. Starts from the routing and prices of phase 2
// (MaxScoreSolver.ExcessRouting.cs); MaxScoreSolver.Result.cs reports the outcome.

using System.Numerics;

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    private sealed partial class State
    {
        /// <summary>
        /// The exact finish. The scores become integers X at a common binary scale (<see cref="ExactScores"/>), in Int128 when a
        /// bound proves every label and sum below fits (see <see cref="LabelBudget"/>), in BigInteger otherwise; one generic
        /// implementation serves both. Potentials phi (phi(a) = -lambda_a, phi(z) = 0) are snapped to the grid and relaxed by
        /// exact Bellman-Ford over the contracted graph built from the maintained minimal tokens; a negative cycle is canceled
        /// and the loop repeats. With no cycle, every token is checked exactly against the potentials (screened in doubles,
        /// exact when close); a violated pair means that pair's exact minimum was another token, which then enters the graph.
        /// Returns the cycles canceled; sets the prices from the exact potentials.
        /// </summary>
        public int FinishExactly()
        {
            exact = new ExactScores(s);
            int budget = LabelBudget(exact.Bits);
            WideFinish = budget + 3 > ExactScores.Room<Int128>();
            return WideFinish ? FinishExactly<BigInteger>(exact, budget) : FinishExactly<Int128>(exact, budget);
        }

        /// <summary>True when the exact finish needed BigInteger.</summary>
        public bool WideFinish { get; private set; }

        /// <summary>
        /// The bound B on start labels: |phi| &lt;= 2^B with B = bits + 1 + w, where 2^w exceeds (E + 1) * arcs, the most
        /// relaxations Bellman-Ford performs. Arc costs X_ia - X_ib are below 2^(bits+1), so every label stays below
        /// 2^B + 2^B = 2^(B+1), every relaxation sum and phi_a + X_ia below 2^(B+2), and lambda = phi(z) - phi(a) likewise:
        /// the arithmetic fits a signed type holding 2^(B+3).
        /// </summary>
        private int LabelBudget(int bits)
        {
            long relaxations = (long)(e + 1) * (e * e + 2 * e);
            return bits + 1 + (64 - BitOperations.LeadingZeroCount((ulong)relaxations));
        }

        /// <summary>The exact finish in the integer type T, which must hold 2^(budget+3).</summary>
        private int FinishExactly<T>(ExactScores scores, int budget) where T : IBinaryInteger<T>
        {
            var limit = T.One << budget;
            var phi = new T[e + 1];
            for (int a = 0; a < e; a++)
            {
                if (!scores.TrySnap(lambda[a], budget, out T price))
                {
                    Array.Clear(phi); // prices out of the bound: start from zero labels (any labels work)
                    break;
                }
                phi[a] = -price;
            }
            var graph = new ContractedGraph<T>(e + 1, e * e + 2 * e);
            var cachedToken = new int[e * e];      // [E, E] the token whose key is in cachedKey, or -1
            var cachedKey = new T[e * e];          // [E, E] X_ta - X_tb for that token
            var candidate = new int[e * e];        // [E, E] a token found by the check with a smaller key than the arc's, or -1
            var reduced = new double[e];           // [E] scratch for the check: the potentials in doubles
            var chosen = new int[e];               // [E] scratch for the check: a token's experts
            Array.Fill(cachedToken, -1);
            Array.Fill(candidate, -1);
            int canceled = 0;
            while (true)
            {
                graph.Clear();
                for (int a = 0; a < e; a++)
                {
                    for (int b = 0; b < e; b++)
                    {
                        int pair = a * e + b, t = bestToken[pair], o = candidate[pair];
                        T cost = T.Zero;
                        if (t >= 0)
                        {
                            if (cachedToken[pair] != t)
                            {
                                cachedToken[pair] = t;
                                cachedKey[pair] = scores.Of<T>(t * e + a) - scores.Of<T>(t * e + b);
                            }
                            cost = cachedKey[pair];
                        }
                        if (o >= 0 && o != t && member[o * e + a] && !member[o * e + b])
                        {
                            var alt = scores.Of<T>(o * e + a) - scores.Of<T>(o * e + b);
                            if (t < 0 || alt < cost)
                            {
                                cost = alt;
                                t = o;
                            }
                        }
                        if (t >= 0)
                        {
                            graph.AddArc(a, b, cost, t);
                        }
                    }
                    if (load[a] < cap[a])
                    {
                        graph.AddArc(a, e, T.Zero, -1);
                    }
                    if (load[a] > 0)
                    {
                        graph.AddArc(e, a, T.Zero, -1);
                    }
                }
                foreach (var label in phi)
                {
                    if (label > limit || label < -limit)
                    {
                        Array.Clear(phi); // keep the start labels within the budget
                        break;
                    }
                }
                var cycle = graph.FindNegativeCycle(phi);
                if (cycle is not null)
                {
                    ApplyCycle(graph, cycle);
                    Array.Fill(candidate, -1);
                    canceled++;
                    continue;
                }
                if (!FindViolations(scores, phi, candidate, reduced, chosen))
                {
                    for (int a = 0; a < e; a++)
                    {
                        // lambda_a = phi(z) - phi(a); an expert below capacity is priced 0 (complementary slackness; with
                        // load > 0 the arcs a -> z and z -> a force it, with load 0 raising a nonpositive price to 0 keeps
                        // every token's condition, as no token holds a).
                        lambda[a] = load[a] < cap[a] ? 0.0 : scores.ToDouble(phi[e] - phi[a]);
                    }
                    return canceled;
                }
            }
        }

        /// <summary>Moves the tokens of a negative cycle. A token may carry two arcs of the cycle (a -> b, then b -> d),
        /// so each move is applied once its token is on its tail.</summary>
        private void ApplyCycle<T>(ContractedGraph<T> graph, List<int> cycle) where T : IBinaryInteger<T>
        {
            var pending = cycle.Where(arc => graph.Token(arc) >= 0).ToList();
            while (pending.Count > 0)
            {
                int ready = pending.FindIndex(arc => member[graph.Token(arc) * e + graph.From(arc)] && !member[graph.Token(arc) * e + graph.To(arc)]);
                if (ready < 0)
                {
                    throw new InvalidOperationException("a negative cycle whose moves cannot be applied");
                }
                int arc = pending[ready];
                Move(graph.Token(arc), graph.From(arc), graph.To(arc));
                pending.RemoveAt(ready);
            }
        }

        /// <summary>
        /// Checks every token exactly against the potentials: optimality needs min over chosen a of (phi(a) + X_ia) &gt;= max
        /// over unchosen b of (phi(b) + X_ib) (that is phi(b) &lt;= phi(a) + X_ia - X_ib on every token arc). Screened in
        /// doubles: with low the rounded minimum over the chosen experts, a token passes when exactly k of its experts reach
        /// low - margin (the chosen ones always do); a token that fails is decided exactly. A violating token records itself
        /// as the candidate of its worst pair (the arg-min a, arg-max b), keeping the smaller key when two tokens share a
        /// pair. Returns whether any token violated.
        /// </summary>
        private bool FindViolations<T>(ExactScores scores, T[] phi, int[] candidate, double[] p, int[] chosen) where T : IBinaryInteger<T>
        {
            double maxAbs = scores.MaxAbs;
            for (int a = 0; a < e; a++)
            {
                p[a] = scores.ToDouble(phi[a]);
                maxAbs = Math.Max(maxAbs, Math.Abs(p[a]));
            }
            // Each p(a) + S_ia is within 3 u maxAbs of its exact value (p rounded once, then one addition), and rounding
            // low - margin moves the threshold by under 3 u maxAbs: a margin of 16 u maxAbs leaves every passing unchosen
            // expert strictly below the exact minimum. The subnormal term covers the absolute error of rounding p. Near the
            // top of the double range the screen is off (every token exact).
            double margin = 16 * maxAbs * Math.ScaleB(1.0, -53) + Math.ScaleB(1.0, -1070);
            bool screen = maxAbs < double.MaxValue / 16;
            bool found = false;
            for (int i = 0; i < n; i++)
            {
                int row = i * e;
                if (screen && Passes(chosen.AsSpan(0, Chosen(i, chosen)), s.AsSpan(row, e), p, margin))
                {
                    continue;
                }
                int worstA = -1, worstB = -1;
                T lowExact = T.Zero, highExact = T.Zero;
                for (int x = 0; x < e; x++)
                {
                    var v = phi[x] + scores.Of<T>(row + x);
                    if (member[row + x])
                    {
                        if (worstA < 0 || v < lowExact)
                        {
                            worstA = x;
                            lowExact = v;
                        }
                    }
                    else if (worstB < 0 || v > highExact)
                    {
                        worstB = x;
                        highExact = v;
                    }
                }
                if (worstA < 0 || worstB < 0 || lowExact >= highExact)
                {
                    continue;
                }
                int pair = worstA * e + worstB, held = candidate[pair];
                if (held < 0 || !member[held * e + worstA] || member[held * e + worstB] ||
                    scores.Of<T>(row + worstA) - scores.Of<T>(row + worstB) < scores.Of<T>(held * e + worstA) - scores.Of<T>(held * e + worstB))
                {
                    candidate[pair] = i;
                }
                found = true;
            }
            return found;
        }

        /// <summary>The screen for one token: with low = min over its chosen experts x of p_x + S_x, whether exactly
        /// k experts have p_x + S_x &gt;= low - margin (the chosen ones always do; the count runs over whole vectors).</summary>
        private bool Passes(ReadOnlySpan<int> chosen, ReadOnlySpan<double> scores, double[] p, double margin)
        {
            double low = double.PositiveInfinity;
            foreach (int x in chosen)
            {
                double v = p[x] + scores[x];
                low = v < low ? v : low;
            }
            double threshold = low - margin;
            var bar = new Vector<double>(threshold);
            var reach = Vector<long>.Zero;
            int count = 0, y = 0;
            for (; y + Vector<double>.Count <= e; y += Vector<double>.Count)
            {
                var v = new Vector<double>(p.AsSpan(y, Vector<double>.Count)) + new Vector<double>(scores.Slice(y, Vector<double>.Count));
                reach -= Vector.GreaterThanOrEqual(v, bar);
            }
            for (; y < e; y++)
            {
                count += p[y] + scores[y] >= threshold ? 1 : 0;
            }
            return count + Vector.Sum(reach) == k;
        }
    }
}
