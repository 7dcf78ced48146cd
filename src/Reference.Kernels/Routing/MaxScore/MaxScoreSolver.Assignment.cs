// Phase 2a of the MaxScore fast solver: the assignment. Under the prices of phase 1 (MaxScoreSolver.PriceSweeps.cs) every
// token takes a top k of its reduced scores S_ix - lambda_x; a token tied at the boundary takes the tied experts with the
// most room. Every token then holds a top k, which is what phase 2b (MaxScoreSolver.ExcessRouting.cs) needs of the
// routing it repairs; loads may still exceed capacity.

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    private sealed partial class State
    {
        /// <summary>Assigns every token the top-k of its reduced scores (ties to the lower index).</summary>
        /// <remarks>When phase 1 swept all tokens, their ranked lists are exact prefixes of the rankings under the final prices,
        /// so their first k entries are read instead of ranking again.</remarks>
        public void AssignTopK()
        {
            int m = Math.Min(k + 1, e); // the (k+1)-th shows a tie at the boundary
            Span<int> idx = stackalloc int[m];
            Span<double> val = stackalloc double[m];
            var tied = new List<(int Token, double Boundary)>();
            for (int i = 0; i < n; i++)
            {
                if (ranked is null || !ranked.Prefix(i, idx, val))
                {
                    RankRow(i, idx, val);
                }
                if (m > k && val[k] == val[k - 1])
                {
                    tied.Add((i, val[k - 1])); // placed once the untied tokens show where room is left
                    continue;
                }
                for (int q = 0; q < k; q++)
                {
                    Add(i, idx[q]);
                }
            }
            foreach (var (i, boundary) in tied)
            {
                AssignTied(i, boundary);
            }
        }

        /// <summary>
        /// A token whose k-th and (k+1)-th reduced scores tie: every expert above the tied value, then the tied ones ranked by
        /// <see cref="Need"/> (ties to the lower index). Any choice among tied experts is a top k, so the prices still certify
        /// it; choosing by room keeps ties (scores on a grid) from piling onto the lowest indices or into the stand-ins.
        /// </summary>
        private void AssignTied(int i, double boundary)
        {
            int taken = 0;
            for (int x = 0; x < e; x++)
            {
                if (s[i * e + x] - lambda[x] > boundary)
                {
                    Add(i, x);
                    taken++;
                }
            }
            for (; taken < k; taken++)
            {
                int pick = -1;
                for (int x = 0; x < e; x++)
                {
                    if (!member[i * e + x] && s[i * e + x] - lambda[x] == boundary && (pick < 0 || Need(x) > Need(pick)))
                    {
                        pick = x;
                    }
                }
                Add(i, pick);
            }
        }

        /// <summary>How much a tied token is wanted on x: a real expert's room ranks first (short of capacity every real expert
        /// ends full); a stand-in's room (never full) after it; a full expert last, by how full.</summary>
        private long Need(int x)
        {
            long room = cap[x] - load[x];
            return room <= 0 ? room - 2L * n : x < real ? room + 2L * n : room;
        }
    }
}
