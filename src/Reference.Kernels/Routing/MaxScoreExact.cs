using System.Numerics;
using Reference.Numerics;

namespace Reference.Kernels.Routing;

/// <summary>
/// The solver's scores as exact integers at one common binary scale (<see cref="DyadicScale"/>), indexed like the
/// scores, plus the largest |score| for rounding-error screens and <see cref="Snap"/> for approximate values.
/// </summary>
public sealed class ExactScores
{
    private readonly double[] values;
    private readonly DyadicScale scale;

    /// <summary>Prepares the scale for a set of finite doubles.</summary>
    public ExactScores(double[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        this.values = values;
        scale = new DyadicScale(values);
        double max = 0;
        foreach (double x in values)
        {
            max = Math.Max(max, Math.Abs(x));
        }
        MaxAbs = max;
    }

    /// <summary>Q, the common binary exponent: a value X stands for X * 2^Q.</summary>
    public int Exponent => scale.Exponent;

    /// <summary>The largest |value|.</summary>
    public double MaxAbs { get; }

    /// <summary>The exact integer for the value at an index.</summary>
    public BigInteger Of(int index) => scale.Of(values[index]);

    /// <summary>The exact integer for a double at this scale.</summary>
    /// <exception cref="ArgumentException">The double is not a multiple of 2^Q.</exception>
    public BigInteger Of(double x) => scale.Of(x);

    /// <summary>The grid integer nearest below x / 2^Q (exact when x is on the grid): snaps an approximate value.</summary>
    public BigInteger Snap(double x)
    {
        if (x == 0 || !double.IsFinite(x))
        {
            return BigInteger.Zero;
        }
        var (mantissa, exponent) = DyadicScale.Split(x);
        int shift = exponent - Exponent;
        return shift >= 0 ? new BigInteger(mantissa) << shift : new BigInteger(mantissa) >> -shift;
    }

    /// <summary>The double nearest to X * 2^Q.</summary>
    public double ToDouble(BigInteger value) => scale.ToDouble(value);
}

/// <summary>One arc of the contracted graph: moving <see cref="Token"/> from expert From to expert To (or a capacity arc
/// through the sink, Token = -1), with its exact cost.</summary>
/// <param name="From">The tail node.</param>
/// <param name="To">The head node.</param>
/// <param name="Cost">The exact cost (integer at the common scale).</param>
/// <param name="Token">The token moved, or -1.</param>
public sealed record ContractedArc(int From, int To, BigInteger Cost, int Token);

/// <summary>A small dense graph with exact integer costs, for Bellman-Ford with negative-cycle detection.</summary>
public sealed class ContractedGraph
{
    private readonly List<ContractedArc> arcs = new();

    /// <summary>Creates a graph with nodes 0..nodes-1.</summary>
    public ContractedGraph(int nodes) => Nodes = nodes;

    /// <summary>The number of nodes.</summary>
    public int Nodes { get; }

    /// <summary>The arcs.</summary>
    public IReadOnlyList<ContractedArc> Arcs => arcs;

    /// <summary>Adds an arc.</summary>
    public void AddArc(int from, int to, BigInteger cost, int token) => arcs.Add(new ContractedArc(from, to, cost, token));

    /// <summary>
    /// Bellman-Ford from a virtual root joined to every node at cost 0. Returns a negative cycle (its arcs in order) or, when
    /// there is none, null with exact potentials phi satisfying phi(to) &lt;= phi(from) + cost on every arc.
    /// </summary>
    public List<ContractedArc>? FindNegativeCycle(out BigInteger[] potentials) =>
        FindNegativeCycle(new BigInteger[Nodes], out potentials);

    /// <summary>Bellman-Ford from given starting labels (any labels work; good ones converge in a round or two).
    /// Returns a negative cycle, or null with potentials phi satisfying phi(to) &lt;= phi(from) + cost on every arc.</summary>
    public List<ContractedArc>? FindNegativeCycle(BigInteger[] start, out BigInteger[] potentials)
    {
        ArgumentNullException.ThrowIfNull(start);
        var phi = (BigInteger[])start.Clone();
        var via = new ContractedArc?[Nodes];
        int updated = -1;
        for (int round = 0; round < Nodes; round++)
        {
            updated = -1;
            foreach (var arc in arcs)
            {
                var candidate = phi[arc.From] + arc.Cost;
                if (candidate < phi[arc.To])
                {
                    phi[arc.To] = candidate;
                    via[arc.To] = arc;
                    updated = arc.To;
                }
            }
            if (updated < 0)
            {
                potentials = phi;
                return null;
            }
        }
        // Still relaxing after |V| rounds: walk back |V| steps to land on the cycle, then collect it.
        int node = updated;
        for (int i = 0; i < Nodes; i++)
        {
            node = via[node]!.From;
        }
        var cycle = new List<ContractedArc>();
        int first = node;
        do
        {
            var arc = via[node]!;
            cycle.Add(arc);
            node = arc.From;
        }
        while (node != first);
        cycle.Reverse();
        potentials = phi;
        return cycle;
    }
}
