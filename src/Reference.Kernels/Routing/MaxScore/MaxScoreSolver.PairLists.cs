// The pair lists of the MaxScore fast solver: the token arcs of the contracted graph. For each ordered pair of experts
// (a, b), the few tokens on a and not on b with the smallest S_ia - S_ib (best and bestToken hold the first; the storage
// is declared in MaxScoreSolver.State.cs). Move shifts a token between experts and repairs the lists it touches; a list
// that runs dry is rebuilt from the expert's holders. Phase 2b (MaxScoreSolver.ExcessRouting.cs) builds them and moves
// tokens along shortest paths; phase 3 (MaxScoreSolver.ExactFinish.cs) reads them and cancels cycles with Move.

using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    private sealed partial class State
    {
        /// <summary>Moves token t from expert u to expert v and repairs the pair minima that the move touches:
        /// row u loses t (entries whose best token was t are rescanned), row v gains t, and for the token's other experts x
        /// the entry (x, u) gains t while the entry (x, v) loses it.</summary>
        private void Move(int t, int u, int v)
        {
            Remove(t, u);
            Add(t, v);
            int row = t * e;
            for (int b = 0; b < e; b++)
            {
                Drop(u, b, t); // t left u
            }
            for (int x = 0; x < e; x++)
            {
                if (!member[row + x])
                {
                    continue;
                }
                if (x == v)
                {
                    // Row v gains t for every expert t is not on (u among them).
                    for (int b = 0; b < e; b++)
                    {
                        if (!member[row + b])
                        {
                            Offer(v, b, t);
                        }
                    }
                    continue;
                }
                Offer(x, u, t); // u is now a target for t
                Drop(x, v, t);  // v no longer is
            }
        }

        /// <summary>Token t became eligible for the pair (a, b): list it if it ranks among the pair's best.</summary>
        private void Offer(int a, int b, int t)
        {
            int at = a * e + b, basis = at * Listed, count = candCount[at];
            double key = s[t * e + a] - s[t * e + b];
            if (count > 0)
            {
                int last = basis + count - 1;
                bool beforeLast = key < candKey[last] || (key == candKey[last] && t < candTok[last]);
                if (!beforeLast && (count == Listed || truncated[at]))
                {
                    truncated[at] |= count == Listed;
                    return; // ranks after every listed token: stays unlisted
                }
            }
            if (count == Listed)
            {
                count--; // drop the last to make room
                truncated[at] = true;
            }
            int pos = basis + count;
            while (pos > basis && (key < candKey[pos - 1] || (key == candKey[pos - 1] && t < candTok[pos - 1])))
            {
                candKey[pos] = candKey[pos - 1];
                candTok[pos] = candTok[pos - 1];
                pos--;
            }
            candKey[pos] = key;
            candTok[pos] = t;
            candCount[at] = count + 1;
            if (pos == basis)
            {
                Sync(at); // a new best
            }
        }

        /// <summary>Token t stopped being eligible for the pair (a, b): unlist it; rescan when a truncated list runs dry.</summary>
        private void Drop(int a, int b, int t)
        {
            int at = a * e + b, basis = at * Listed, count = candCount[at];
            int p = -1;
            for (int q = 0; q < count; q++)
            {
                if (candTok[basis + q] == t)
                {
                    p = q;
                    break;
                }
            }
            if (p < 0)
            {
                return;
            }
            for (int q = p; q + 1 < count; q++)
            {
                candKey[basis + q] = candKey[basis + q + 1];
                candTok[basis + q] = candTok[basis + q + 1];
            }
            candCount[at] = count - 1;
            if (count - 1 == 0 && truncated[at])
            {
                RecomputeEntry(a, b);
                return;
            }
            if (p == 0)
            {
                Sync(at); // the best left
            }
        }

        private void Sync(int at)
        {
            bool any = candCount[at] > 0;
            best[at] = any ? candKey[at * Listed] : double.PositiveInfinity;
            bestToken[at] = any ? candTok[at * Listed] : -1;
        }

        private void RecomputeEntry(int a, int b)
        {
            int at = a * e + b, last = at * Listed + Listed - 1;
            candCount[at] = 0;
            truncated[at] = false;
            Sync(at);
            foreach (int i in CollectionsMarshal.AsSpan(holders[a]))
            {
                if (member[i * e + b])
                {
                    continue;
                }
                if (candCount[at] == Listed)
                {
                    // Screen before the call: most holders rank after a full list's last token.
                    double key = s[i * e + a] - s[i * e + b];
                    if (key > candKey[last] || (key == candKey[last] && i > candTok[last]))
                    {
                        truncated[at] = true;
                        continue;
                    }
                }
                Offer(a, b, i);
            }
        }

        /// <summary>Rebuilds the pair lists (a, *): for every b, the best tokens on a and not on b by S_ia - S_ib.</summary>
        private void RecomputeRow(int a)
        {
            for (int b = 0; b < e; b++)
            {
                candCount[a * e + b] = 0;
                truncated[a * e + b] = false;
                Sync(a * e + b);
            }
            if (memberBits.Length > 0)
            {
                RecomputeRowScreened(a);
                return;
            }
            foreach (int i in holders[a])
            {
                int row = i * e;
                for (int b = 0; b < e; b++)
                {
                    if (!member[row + b])
                    {
                        Offer(a, b, i);
                    }
                }
            }
        }

        /// <summary>
        /// <see cref="RecomputeRow"/> for E &lt;= 64: a token is offered to the pairs (a, b) only where its key can enter the
        /// list (key &lt;= the list's last key, or the list is not full), found for all b at once with vector compares; a token
        /// screened out of a full list marks it truncated, as <see cref="Offer"/> would.
        /// </summary>
        private void RecomputeRowScreened(int a)
        {
            Span<double> limit = stackalloc double[e]; // the last key of a full list, else +Inf
            limit.Fill(double.PositiveInfinity);
            ulong fullLists = 0, truncatedLists = 0, all = e == 64 ? ulong.MaxValue : (1UL << e) - 1;
            foreach (int i in holders[a])
            {
                int row = i * e;
                double sa = s[row + a];
                ulong enter = 0;
                int b = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var top = Vector256.Create(sa);
                    for (; b + 4 <= e; b += 4)
                    {
                        var key = top - Vector256.Create(s.AsSpan(row + b, 4));
                        enter |= (ulong)Vector256.LessThanOrEqual(key, Vector256.Create(limit.Slice(b, 4))).ExtractMostSignificantBits() << b;
                    }
                }
                for (; b < e; b++)
                {
                    enter |= sa - s[row + b] <= limit[b] ? 1UL << b : 0;
                }
                ulong eligible = ~memberBits[i] & all;
                truncatedLists |= eligible & ~enter & fullLists;
                for (ulong bits = eligible & enter; bits != 0; bits &= bits - 1)
                {
                    int target = BitOperations.TrailingZeroCount(bits), at = a * e + target;
                    Offer(a, target, i);
                    if (candCount[at] == Listed)
                    {
                        fullLists |= 1UL << target;
                        limit[target] = candKey[at * Listed + Listed - 1];
                    }
                }
            }
            for (ulong bits = truncatedLists; bits != 0; bits &= bits - 1)
            {
                truncated[a * e + BitOperations.TrailingZeroCount(bits)] = true;
            }
        }
    }
}
