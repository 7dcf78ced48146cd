using System.Numerics;
using System.Runtime.InteropServices;
using Reference.Numerics;

namespace Reference.Kernels.Routing;

/// <summary>
/// The solver's scores as exact integers X at one common binary scale 2^Q (<see cref="DyadicScale"/>), indexed like the
/// scores, in any signed integer type T wide enough for them: <see cref="Bits"/> says how wide that is (|X| &lt; 2^Bits), so
/// a caller that can bound its sums picks <see cref="Int128"/> when they provably fit and <see cref="BigInteger"/> otherwise.
/// Also the largest |score| for rounding-error screens, and <see cref="TrySnap{T}"/> for approximate values.
/// </summary>
public sealed class ExactScores
{
    private readonly double[] values;
    private readonly DyadicScale scale;

    /// <summary>Prepares the scale for a set of finite doubles in one pass over their bit patterns.</summary>
    /// <param name="values">The scores, any length.</param>
    /// <exception cref="ArgumentException">A value is NaN or infinite.</exception>
    public ExactScores(double[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        this.values = values;
        // The bit pattern of |x| (sign cleared) orders like |x|, and the exponent of Split(x) grows with |x|: the smallest
        // nonzero |x| sets Q, the largest |x| sets the width. NaN and infinity have the largest patterns of all.
        var (smallest, largest) = MagnitudeRange(MemoryMarshal.Cast<double, long>(values.AsSpan()));
        if (largest >= BitConverter.DoubleToInt64Bits(double.PositiveInfinity))
        {
            int bad = Array.FindIndex(values, x => !double.IsFinite(x));
            throw new ArgumentException($"values[{bad}] is {Guard.Describe(values[bad])}; scores must be finite", nameof(values));
        }
        scale = new DyadicScale(smallest == long.MaxValue ? [] : [BitConverter.Int64BitsToDouble(smallest)]);
        MaxAbs = BitConverter.Int64BitsToDouble(largest);
        Bits = (int)scale.Of(MaxAbs).GetBitLength();
    }

    /// <summary>Q, the common binary exponent: a value X stands for X * 2^Q.</summary>
    public int Exponent => scale.Exponent;

    /// <summary>The largest |value|.</summary>
    public double MaxAbs { get; }

    /// <summary>The width of the integers: every value's |X| is below 2^Bits (0 when all values are 0).</summary>
    public int Bits { get; }

    /// <summary>The largest b such that the signed integer type T holds every integer of magnitude below 2^b
    /// (127 for <see cref="Int128"/>, <see cref="int.MaxValue"/> for <see cref="BigInteger"/>).</summary>
    /// <typeparam name="T">A signed binary integer type.</typeparam>
    public static int Room<T>() where T : IBinaryInteger<T> => Width<T>.Bits;

    /// <summary>The exact integer X for the value at an index.</summary>
    /// <typeparam name="T">A signed integer type with <see cref="Room{T}"/> &gt;= <see cref="Bits"/>.</typeparam>
    /// <param name="index">An index into the values.</param>
    /// <exception cref="InvalidOperationException">T is too narrow for these values.</exception>
    public T Of<T>(int index) where T : IBinaryInteger<T>
    {
        if (Bits > Width<T>.Bits)
        {
            throw new InvalidOperationException($"{typeof(T).Name} holds {Width<T>.Bits} bits; these scores need {Bits}");
        }
        double x = values[index];
        if (x == 0)
        {
            return T.Zero;
        }
        var (mantissa, exponent) = DyadicScale.Split(x);
        return T.CreateTruncating(mantissa) << (exponent - Exponent);
    }

    /// <summary>The value at an index as mantissa * 2^(Exponent + shift), shift &gt;= 0 (mantissa 0 for a zero).</summary>
    internal (long Mantissa, int Shift) Parts(int index)
    {
        double x = values[index];
        if (x == 0)
        {
            return (0, 0);
        }
        var (mantissa, exponent) = DyadicScale.Split(x);
        return (mantissa, exponent - Exponent);
    }

    /// <summary>The grid integer nearest below x / 2^Q (exact when x is on the grid), if its magnitude is below 2^maxBits;
    /// snaps an approximate value. Zero for x = 0 or a non-finite x.</summary>
    /// <typeparam name="T">A signed integer type with <see cref="Room{T}"/> &gt;= maxBits.</typeparam>
    /// <param name="x">The approximate value.</param>
    /// <param name="maxBits">The bound on the result's magnitude, as a power of two.</param>
    /// <param name="value">The snapped integer, or zero when it does not fit.</param>
    /// <returns>Whether the snapped integer's magnitude is below 2^maxBits.</returns>
    /// <exception cref="ArgumentOutOfRangeException">maxBits exceeds <see cref="Room{T}"/>.</exception>
    public bool TrySnap<T>(double x, int maxBits, out T value) where T : IBinaryInteger<T>
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxBits, Width<T>.Bits);
        value = T.Zero;
        if (x == 0 || !double.IsFinite(x))
        {
            return true;
        }
        var (mantissa, exponent) = DyadicScale.Split(x);
        int shift = exponent - Exponent;
        if (shift < 0)
        {
            // Arithmetic right shift floors; a long shifts by at most 63.
            long floor = -shift >= 63 ? (mantissa < 0 ? -1L : 0L) : mantissa >> -shift;
            if (BitLength(floor) > maxBits)
            {
                return false;
            }
            value = T.CreateTruncating(floor);
            return true;
        }
        if (BitLength(mantissa) + (long)shift > maxBits)
        {
            return false;
        }
        value = T.CreateTruncating(mantissa) << shift;
        return true;
    }

    /// <summary>The number of bits of |x| (|x| &lt; 2^result); |x| &lt;= 2^53 here.</summary>
    private static int BitLength(long x) => 64 - BitOperations.LeadingZeroCount((ulong)Math.Abs(x));

    /// <summary>The double nearest to X * 2^Q (correctly rounded, <see cref="DyadicScale.ToDouble"/>).</summary>
    /// <typeparam name="T">A signed binary integer type.</typeparam>
    /// <param name="value">The integer X.</param>
    public double ToDouble<T>(T value) where T : IBinaryInteger<T> => scale.ToDouble(BigInteger.CreateTruncating(value));

    /// <summary>The smallest nonzero and the largest sign-cleared bit pattern (long.MaxValue and 0 when there are none).</summary>
    private static (long Smallest, long Largest) MagnitudeRange(ReadOnlySpan<long> bits)
    {
        long smallest = long.MaxValue, largest = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated && bits.Length >= Vector<long>.Count)
        {
            var magnitude = new Vector<long>(long.MaxValue);
            var low = magnitude;
            var high = Vector<long>.Zero;
            for (; i <= bits.Length - Vector<long>.Count; i += Vector<long>.Count)
            {
                var v = new Vector<long>(bits[i..]) & magnitude;
                high = Vector.Max(high, v);
                low = Vector.Min(low, Vector.ConditionalSelect(Vector.Equals(v, Vector<long>.Zero), magnitude, v));
            }
            for (int j = 0; j < Vector<long>.Count; j++)
            {
                smallest = Math.Min(smallest, low[j]);
                largest = Math.Max(largest, high[j]);
            }
        }
        for (; i < bits.Length; i++)
        {
            long v = bits[i] & long.MaxValue;
            largest = Math.Max(largest, v);
            if (v != 0)
            {
                smallest = Math.Min(smallest, v);
            }
        }
        return (smallest, largest);
    }

    /// <summary>The magnitude bound of a signed integer type, computed once per type.</summary>
    private static class Width<T> where T : IBinaryInteger<T>
    {
        public static readonly int Bits = typeof(T) == typeof(BigInteger) ? int.MaxValue
            : T.IsNegative(T.AllBitsSet) ? 8 * T.Zero.GetByteCount() - 1
            : throw new NotSupportedException($"{typeof(T).Name} is unsigned; exact differences need a signed type");
    }
}

/// <summary>
/// An exact running total of values of an <see cref="ExactScores"/> set, as an integer at its scale in T. Fast for any T:
/// each value's 53-bit mantissa is added to a long kept per binary shift, and the longs are carried into T only every 512
/// values (512 mantissas below 2^53 stay below 2^62), so a <see cref="BigInteger"/> total costs about what a long does.
/// </summary>
/// <typeparam name="T">A signed integer type that holds the total (for n values, 2^(Bits + bits of n)).</typeparam>
public sealed class ExactTotal<T> where T : IBinaryInteger<T>
{
    private const int Batch = 512;
    private readonly ExactScores scores;
    private readonly long[] partial = new long[2 * 1075]; // [shift] mantissa sums; shifts run 0..2045 for doubles
    private int pending, lowest = int.MaxValue, highest = -1;
    private T total = T.Zero;

    /// <summary>Starts a zero total over a set's values.</summary>
    /// <param name="scores">The set whose values are added by index.</param>
    public ExactTotal(ExactScores scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        this.scores = scores;
    }

    /// <summary>Adds the value at an index of the set.</summary>
    /// <param name="index">An index into the set's values.</param>
    public void Add(int index)
    {
        var (mantissa, shift) = scores.Parts(index);
        partial[shift] += mantissa;
        lowest = Math.Min(lowest, shift);
        highest = Math.Max(highest, shift);
        if (++pending == Batch)
        {
            Carry();
        }
    }

    /// <summary>The exact total X (the sum stands for X * 2^Q).</summary>
    public T Value
    {
        get
        {
            Carry();
            return total;
        }
    }

    private void Carry()
    {
        for (int shift = lowest; shift <= highest; shift++)
        {
            if (partial[shift] != 0)
            {
                total += T.CreateTruncating(partial[shift]) << shift;
                partial[shift] = 0;
            }
        }
        pending = 0;
        lowest = int.MaxValue;
        highest = -1;
    }
}

/// <summary>
/// A small dense graph with exact integer costs in a signed integer type T, for Bellman-Ford with negative-cycle detection.
/// Arcs are numbered in the order they are added; the arrays are reused after <see cref="Clear"/>.
/// Overflow is the caller's to rule out: with start labels of magnitude at most L and arc costs below 2^c in magnitude, every
/// label and every sum formed stays below L + (Nodes * Count + 1) * 2^c in magnitude.
/// </summary>
/// <typeparam name="T">A signed binary integer type (<see cref="Int128"/>, <see cref="BigInteger"/>, ...).</typeparam>
public sealed class ContractedGraph<T> where T : IBinaryInteger<T>
{
    private int[] from, to, token;
    private T[] cost;
    private readonly T[] labels;
    private readonly int[] via;
    private readonly int[] walks; // scratch for PredecessorCycle: the walk that first reached each node

    /// <summary>Creates an empty graph with nodes 0..nodes-1.</summary>
    /// <param name="nodes">The number of nodes, at least 1.</param>
    /// <param name="arcs">Room for this many arcs (it grows as needed).</param>
    public ContractedGraph(int nodes, int arcs = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(nodes, 1);
        Nodes = nodes;
        arcs = Math.Max(arcs, 1);
        from = new int[arcs];
        to = new int[arcs];
        token = new int[arcs];
        cost = new T[arcs];
        labels = new T[nodes];
        via = new int[nodes];
        walks = new int[nodes];
    }

    /// <summary>The number of nodes.</summary>
    public int Nodes { get; }

    /// <summary>The number of arcs.</summary>
    public int Count { get; private set; }

    /// <summary>The tail of an arc.</summary>
    /// <param name="arc">The arc's number.</param>
    public int From(int arc) => from[arc];

    /// <summary>The head of an arc.</summary>
    /// <param name="arc">The arc's number.</param>
    public int To(int arc) => to[arc];

    /// <summary>The token an arc moves, or -1 for a capacity arc.</summary>
    /// <param name="arc">The arc's number.</param>
    public int Token(int arc) => token[arc];

    /// <summary>The exact cost of an arc.</summary>
    /// <param name="arc">The arc's number.</param>
    public T Cost(int arc) => cost[arc];

    /// <summary>Removes every arc (keeps the storage).</summary>
    public void Clear() => Count = 0;

    /// <summary>Adds an arc: moving <paramref name="arcToken"/> from expert <paramref name="tail"/> to expert
    /// <paramref name="head"/> (or a capacity arc, token -1), at an exact cost.</summary>
    /// <param name="tail">The tail node.</param>
    /// <param name="head">The head node.</param>
    /// <param name="arcCost">The exact cost.</param>
    /// <param name="arcToken">The token moved, or -1.</param>
    public void AddArc(int tail, int head, T arcCost, int arcToken)
    {
        if ((uint)tail >= (uint)Nodes || (uint)head >= (uint)Nodes)
        {
            throw new ArgumentOutOfRangeException(nameof(tail), $"arc {tail} -> {head} leaves nodes 0..{Nodes - 1}");
        }
        if (Count == from.Length)
        {
            int grown = 2 * Count;
            Array.Resize(ref from, grown);
            Array.Resize(ref to, grown);
            Array.Resize(ref token, grown);
            Array.Resize(ref cost, grown);
        }
        from[Count] = tail;
        to[Count] = head;
        token[Count] = arcToken;
        cost[Count] = arcCost;
        Count++;
    }

    /// <summary>
    /// Bellman-Ford from the given labels (as if a virtual root reached each node at its label; any labels work, good ones
    /// converge in a round or two). Returns the arcs of a negative cycle in order, leaving the labels unchanged; or null,
    /// having replaced the labels by potentials phi with phi(to) &lt;= phi(from) + cost on every arc and phi &lt;= the labels.
    /// </summary>
    /// <param name="potentials">[Nodes] the start labels; on return without a cycle, the potentials.</param>
    public List<int>? FindNegativeCycle(T[] potentials)
    {
        ArgumentNullException.ThrowIfNull(potentials);
        if (potentials.Length != Nodes)
        {
            throw new ArgumentException($"potentials has {potentials.Length} labels, not {Nodes}", nameof(potentials));
        }
        var phi = labels;
        potentials.CopyTo(phi, 0);
        Array.Fill(via, -1);
        int updated = -1;
        for (int round = 0; round < Nodes; round++)
        {
            updated = -1;
            for (int arc = 0; arc < Count; arc++)
            {
                var candidate = phi[from[arc]] + cost[arc];
                int head = to[arc];
                if (candidate < phi[head])
                {
                    phi[head] = candidate;
                    via[head] = arc;
                    updated = head;
                }
            }
            if (updated < 0)
            {
                phi.CopyTo(potentials, 0);
                return null;
            }
            if (PredecessorCycle() is { } early)
            {
                return early;
            }
        }
        // Still relaxing after Nodes rounds: walk back Nodes steps to land on the cycle, then collect it.
        int node = updated;
        for (int i = 0; i < Nodes; i++)
        {
            node = from[via[node]];
        }
        return CycleThrough(node);
    }

    /// <summary>
    /// A cycle of the predecessor arcs whose exact cost is negative, or null. Labels only decrease, so every cycle that the
    /// predecessor arcs close is negative (Cherkassky and Goldberg, Negative-cycle detection algorithms, 1999); the cost is
    /// summed anyway, so a cycle is returned only when it is. Looking after each round, in O(Nodes), finds a cycle as soon as
    /// it forms instead of after Nodes rounds, each of which relaxes every arc.
    /// </summary>
    private List<int>? PredecessorCycle()
    {
        var walk = walks;
        Array.Fill(walk, -1);
        for (int start = 0; start < Nodes; start++)
        {
            int node = start;
            while (node >= 0 && walk[node] < 0)
            {
                walk[node] = start;
                node = via[node] < 0 ? -1 : from[via[node]];
            }
            if (node >= 0 && walk[node] == start)
            {
                var cycle = CycleThrough(node);
                var total = T.Zero;
                foreach (int arc in cycle)
                {
                    total += cost[arc];
                }
                if (total < T.Zero)
                {
                    return cycle;
                }
            }
        }
        return null;
    }

    /// <summary>The predecessor arcs around the cycle through <paramref name="node"/>, in order.</summary>
    private List<int> CycleThrough(int node)
    {
        var cycle = new List<int>();
        int first = node;
        do
        {
            int arc = via[node];
            cycle.Add(arc);
            node = from[arc];
        }
        while (node != first);
        cycle.Reverse();
        return cycle;
    }
}
