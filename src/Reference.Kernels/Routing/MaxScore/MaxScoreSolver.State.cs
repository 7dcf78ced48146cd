// The MaxScore fast solver's mutable state (MaxScoreSolver.State): the scores, the prices lambda, which token is on which
// expert (member, memberBits, holders, slot, load), the storage of the pair lists (best, bestToken and the short
// candidate lists, maintained by MaxScoreSolver.PairLists.cs), and the basic operations every phase uses: Add and Remove
// a token on an expert, rank a token's reduced scores, list a token's chosen experts. The phases are the other
// MaxScoreSolver.*.cs files; MaxScoreSolver.cs runs them in order.

using System.Numerics;

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    /// <summary>The solver's mutable state.</summary>
    private sealed partial class State
    {
        private readonly double[] s;          // [N, E] scores
        private readonly int n, e, k;
        private readonly int[] cap;           // [E] capacities (C for a real expert; N for a stand-in for an empty slot)
        private readonly int real;            // experts below this index are real; the rest are stand-ins, reported as -1
        private readonly double[] lambda;     // [E] prices
        private readonly bool[] member;       // [N, E] chosen
        private readonly ulong[] memberBits;  // [N] bit x: token i is on x (only when E <= 64; empty otherwise)
        private readonly int[] load;          // [E]
        private readonly List<int>[] holders; // [E] tokens on each expert
        private readonly int[] slot;          // [N, E] position of token i in holders[e], or -1
        private readonly double[] best;       // [E, E] min over tokens on a, not on b, of S_ia - S_ib (rounded)
        private readonly int[] bestToken;     // [E, E] the token attaining it (ties to the lower token), or -1
        // Per pair, the few best tokens (key ascending, ties to the lower token), so that a leaving best token is replaced
        // without rescanning the expert's holders. Unlisted eligible tokens have keys >= the last listed one when the
        // list is truncated; an untruncated list holds every eligible token.
        private const int Listed = 4;
        private readonly double[] candKey;    // [E, E, Listed]
        private readonly int[] candTok;       // [E, E, Listed]
        private readonly int[] candCount;     // [E, E]
        private readonly bool[] truncated;    // [E, E]
        private PriceSweeps? ranked;          // phase 1 over all tokens (token j = token i), when it ran
        private ExactScores? exact;           // the scores as exact integers, made by FinishExactly, used again by Result

        public State(double[] scores, int tokens, int experts, int k, int[] capacity, int real)
        {
            s = scores;
            n = tokens;
            e = experts;
            this.k = k;
            cap = capacity;
            this.real = real;
            lambda = new double[e];
            member = new bool[n * e];
            memberBits = new ulong[e <= 64 ? n : 0];
            load = new int[e];
            holders = new List<int>[e];
            for (int x = 0; x < e; x++)
            {
                holders[x] = new List<int>();
            }
            slot = new int[n * e];
            Array.Fill(slot, -1);
            best = new double[e * e];
            bestToken = new int[e * e];
            candKey = new double[e * e * Listed];
            candTok = new int[e * e * Listed];
            candCount = new int[e * e];
            truncated = new bool[e * e];
        }

        private void Add(int i, int x)
        {
            member[i * e + x] = true;
            if (memberBits.Length > 0)
            {
                memberBits[i] |= 1UL << x;
            }
            slot[i * e + x] = holders[x].Count;
            holders[x].Add(i);
            load[x]++;
        }

        private void Remove(int i, int x)
        {
            member[i * e + x] = false;
            if (memberBits.Length > 0)
            {
                memberBits[i] &= ~(1UL << x);
            }
            var list = holders[x];
            int at = slot[i * e + x], last = list[^1];
            list[at] = last;
            slot[last * e + x] = at;
            list.RemoveAt(list.Count - 1);
            slot[i * e + x] = -1;
            load[x]--;
        }

        /// <summary>The indices and reduced scores of a token's best min(idx.Length, E) experts (descending, ties to the
        /// lower index); returns how many; unused tail entries get -Inf and -1.</summary>
        private int RankRow(int i, Span<int> idx, Span<double> val) => RankRow(i, idx, val, out _);

        /// <summary><see cref="RankRow(int, Span{int}, Span{double})"/>, also giving the largest reduced score left out
        /// (-Inf when none is).</summary>
        private int RankRow(int i, Span<int> idx, Span<double> val, out double rest)
        {
            ReadOnlySpan<double> row = s.AsSpan(i * e, e);
            return RowRanking.Rank(row, lambda, idx, val, out rest);
        }

        /// <summary>Writes token i's chosen experts in ascending order into <paramref name="into"/> ([E] room) and returns
        /// how many; reads the member flags 16 at a time as a bit mask.</summary>
        private int Chosen(int i, Span<int> into)
        {
            const int Lanes = 16;
            var flags = System.Runtime.InteropServices.MemoryMarshal.Cast<bool, byte>(member.AsSpan(i * e, e));
            var none = System.Runtime.Intrinsics.Vector128<byte>.Zero;
            int count = 0, x = 0;
            for (; x + Lanes <= e; x += Lanes)
            {
                var block = System.Runtime.Intrinsics.Vector128.Create(flags.Slice(x, Lanes));
                uint bits = ~System.Runtime.Intrinsics.Vector128.ExtractMostSignificantBits(System.Runtime.Intrinsics.Vector128.Equals(block, none)) & 0xFFFFu;
                for (; bits != 0; bits &= bits - 1)
                {
                    into[count++] = x + BitOperations.TrailingZeroCount(bits);
                }
            }
            for (; x < e; x++)
            {
                if (flags[x] != 0)
                {
                    into[count++] = x;
                }
            }
            return count;
        }
    }
}
