using System.Globalization;
using System.Numerics;
using System.Text;

namespace Reference.Flow;

/// <summary>
/// A min-cost-flow problem as a DIMACS file describes it: arcs with lower bounds. Node indices here are 0-based
/// (the file's are 1-based; <see cref="Dimacs"/> converts).
/// <code>
///   minimize   sum_a UnitCosts[a] * x[a]
///   subject to sum_{a leaves v} x[a] - sum_{a enters v} x[a] = Supplies[v]   for every node v
///              Lower[a] &lt;= x[a] &lt;= Capacities[a]                           for every arc a
/// </code>
/// </summary>
/// <param name="NodeCount">n, from the <c>p min n m</c> line.</param>
/// <param name="Tails">[m] 0-based tail of each arc, in the file's order.</param>
/// <param name="Heads">[m] 0-based head of each arc.</param>
/// <param name="Lower">[m] lower bound of each arc, 0 &lt;= Lower[a] &lt;= Capacities[a].</param>
/// <param name="Capacities">[m] upper bound of each arc.</param>
/// <param name="UnitCosts">[m] cost per unit of flow of each arc.</param>
/// <param name="Supplies">[n] supply of each node (0 when the file has no <c>n</c> line for it).</param>
public sealed record DimacsProblem(
    int NodeCount,
    int[] Tails,
    int[] Heads,
    long[] Lower,
    long[] Capacities,
    long[] UnitCosts,
    long[] Supplies)
{
    /// <summary>m, the number of arcs.</summary>
    public int ArcCount => Tails.Length;
}

/// <summary>The answer to a <see cref="DimacsProblem"/>.</summary>
/// <param name="Status">The solver's status (see <see cref="MinCostFlowStatus"/>). Lower-bound bookkeeping that
/// overflows int64 also gives <see cref="MinCostFlowStatus.BadCapacityRange"/> or <see cref="MinCostFlowStatus.BadCostRange"/>.</param>
/// <param name="Cost">sum_a UnitCosts[a] * Flows[a], lower bounds included; 0 unless optimal.</param>
/// <param name="Flows">[m] the flow on each arc of the file, Lower[a] &lt;= Flows[a] &lt;= Capacities[a]; all 0 unless optimal.</param>
/// <param name="Potentials">[n] node potentials with c - p(tail) + p(head) &gt;= 0 on every residual arc (an arc with
/// flow below its capacity forward; an arc with flow above its lower bound backward); all 0 unless optimal.</param>
public sealed record DimacsSolution(MinCostFlowStatus Status, long Cost, long[] Flows, long[] Potentials);

/// <summary>A malformed DIMACS file: the message starts with "line N:" and says what is wrong.</summary>
public sealed class DimacsFormatException : FormatException
{
    /// <summary>Creates the exception for a 1-based line number (0 when the problem is the file as a whole).</summary>
    /// <param name="lineNumber">The 1-based line, or 0.</param>
    /// <param name="problem">What is wrong, without the line prefix.</param>
    public DimacsFormatException(int lineNumber, string problem)
        : base(lineNumber > 0 ? $"line {lineNumber}: {problem}" : $"DIMACS file: {problem}")
    {
        LineNumber = lineNumber;
    }

    /// <summary>The 1-based line number of the offending line (0 when the problem is the file as a whole).</summary>
    public int LineNumber { get; }
}

/// <summary>
/// Reads and writes DIMACS min-cost-flow files (the format of the first DIMACS implementation challenge, as read by
/// LEMON's <c>readDimacsMin</c> and CS2) and their solutions, and solves them with <see cref="MinCostFlow"/>.
/// <para>Problem lines (1-based node ids, integers in decimal):</para>
/// <code>
///   c any comment                      (ignored, as are blank lines)
///   p min NODES ARCS                   (exactly once, before any n or a line)
///   n ID SUPPLY                        (at most once per node; nodes without one have supply 0)
///   a SRC DST LOW CAP COST             (exactly ARCS of them; 0 &lt;= LOW &lt;= CAP)
/// </code>
/// <para>Solution lines (<see cref="FormatSolution"/>): <c>s COST</c>, then <c>f SRC DST FLOW</c> for every arc in the
/// file's order (zero flows included, so parallel arcs stay unambiguous). A non-optimal result is the single line
/// <c>s INFEASIBLE</c>, <c>s UNBALANCED</c>, <c>s BAD_COST_RANGE</c>, <c>s BAD_CAPACITY_RANGE</c> or <c>s NOT_SOLVED</c>.</para>
/// <para>Lower bounds are handled by the standard substitution x = Lower + x' (Ahuja, Magnanti and Orlin 1993,
/// section 2.4): capacity becomes Capacities - Lower, the tail's supply drops by Lower, the head's rises by Lower, and
/// the constant sum_a Lower[a] * UnitCosts[a] is added to the cost (proofs/min-cost-flow.md, theorem flow.lower-bounds).</para>
/// </summary>
public static class Dimacs
{
    /// <summary>Parses DIMACS min-cost-flow text.</summary>
    /// <param name="text">The whole file.</param>
    /// <returns>The problem, 0-based.</returns>
    /// <exception cref="DimacsFormatException">A malformed line (the message names the line and what is wrong), a
    /// missing or duplicate <c>p</c> line, or an arc count that differs from the <c>p</c> line's.</exception>
    public static DimacsProblem Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        using var reader = new StringReader(text);
        return Read(reader);
    }

    /// <summary>Reads DIMACS min-cost-flow text to its end. See <see cref="Parse"/>.</summary>
    /// <param name="reader">The text source.</param>
    /// <returns>The problem, 0-based.</returns>
    /// <exception cref="DimacsFormatException">See <see cref="Parse"/>.</exception>
    public static DimacsProblem Read(TextReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        int lineNumber = 0, problemLine = 0;
        int nodeCount = 0, declaredArcs = 0;
        long[] supplies = [];
        bool[] supplySeen = [];
        var tails = new List<int>();
        var heads = new List<int>();
        var lower = new List<long>();
        var capacities = new List<long>();
        var costs = new List<long>();

        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            string[] fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 0 || fields[0] == "c") continue;

            switch (fields[0])
            {
                case "p":
                    {
                        if (problemLine > 0)
                            throw new DimacsFormatException(lineNumber, $"duplicate p line (the first is line {problemLine})");
                        ExpectFields(fields, 4, "p min NODES ARCS", lineNumber);
                        if (fields[1] != "min")
                            throw new DimacsFormatException(lineNumber, $"problem type is '{fields[1]}', expected 'min'");
                        long n = ParseInteger(fields[2], "NODES", lineNumber);
                        long m = ParseInteger(fields[3], "ARCS", lineNumber);
                        if (n < 0 || n > (long)MinCostFlow.MaxNodeIndex + 1)
                            throw new DimacsFormatException(lineNumber, $"NODES is {n}, must be in 0..{(long)MinCostFlow.MaxNodeIndex + 1}");
                        if (m < 0 || m > int.MaxValue)
                            throw new DimacsFormatException(lineNumber, $"ARCS is {m}, must be in 0..{int.MaxValue}");
                        problemLine = lineNumber;
                        nodeCount = (int)n;
                        declaredArcs = (int)m;
                        supplies = new long[nodeCount];
                        supplySeen = new bool[nodeCount];
                        break;
                    }
                case "n":
                    {
                        RequireProblemLine(problemLine, "an n line", lineNumber);
                        ExpectFields(fields, 3, "n ID SUPPLY", lineNumber);
                        int node = ParseNode(fields[1], "ID", nodeCount, lineNumber);
                        long supply = ParseInteger(fields[2], "SUPPLY", lineNumber);
                        if (supplySeen[node])
                            throw new DimacsFormatException(lineNumber, $"second n line for node {node + 1}");
                        supplySeen[node] = true;
                        supplies[node] = supply;
                        break;
                    }
                case "a":
                    {
                        RequireProblemLine(problemLine, "an a line", lineNumber);
                        ExpectFields(fields, 6, "a SRC DST LOW CAP COST", lineNumber);
                        if (tails.Count == declaredArcs)
                            throw new DimacsFormatException(lineNumber, $"more a lines than the {declaredArcs} arcs the p line (line {problemLine}) declares");
                        int tail = ParseNode(fields[1], "SRC", nodeCount, lineNumber);
                        int head = ParseNode(fields[2], "DST", nodeCount, lineNumber);
                        long low = ParseInteger(fields[3], "LOW", lineNumber);
                        long cap = ParseInteger(fields[4], "CAP", lineNumber);
                        long cost = ParseInteger(fields[5], "COST", lineNumber);
                        if (low < 0)
                            throw new DimacsFormatException(lineNumber, $"LOW is {low}, must be >= 0");
                        if (low > cap)
                            throw new DimacsFormatException(lineNumber, $"LOW {low} > CAP {cap}: no flow fits");
                        tails.Add(tail);
                        heads.Add(head);
                        lower.Add(low);
                        capacities.Add(cap);
                        costs.Add(cost);
                        break;
                    }
                default:
                    throw new DimacsFormatException(lineNumber, $"unknown line type '{fields[0]}' (expected c, p, n or a)");
            }
        }

        if (problemLine == 0) throw new DimacsFormatException(0, "missing p line (p min NODES ARCS)");
        if (tails.Count != declaredArcs)
            throw new DimacsFormatException(0, $"the p line (line {problemLine}) declares {declaredArcs} arcs, but {tails.Count} a lines were found");
        return new DimacsProblem(nodeCount, [.. tails], [.. heads], [.. lower], [.. capacities], [.. costs], supplies);
    }

    /// <summary>
    /// Writes a problem as DIMACS text: a <c>c</c> header line, <c>p min n m</c>, an <c>n</c> line for every node with
    /// non-zero supply (ascending), then the <c>a</c> lines in arc order. Lines end with "\n".
    /// <see cref="Parse"/> of the result gives back an equal problem.
    /// </summary>
    /// <param name="problem">The problem (0-based; written 1-based).</param>
    /// <returns>The file's text.</returns>
    public static string Write(DimacsProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var text = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        text.Append("c min-cost flow problem written by Reference.Flow.Dimacs\n");
        text.Append(inv, $"p min {problem.NodeCount} {problem.ArcCount}\n");
        for (int v = 0; v < problem.NodeCount; v++)
            if (problem.Supplies[v] != 0) text.Append(inv, $"n {v + 1} {problem.Supplies[v]}\n");
        for (int a = 0; a < problem.ArcCount; a++)
            text.Append(inv, $"a {problem.Tails[a] + 1} {problem.Heads[a] + 1} {problem.Lower[a]} {problem.Capacities[a]} {problem.UnitCosts[a]}\n");
        return text.ToString();
    }

    /// <summary>
    /// The solution lines the <c>reference flow</c> command prints, each ending with "\n": <c>s COST</c> then one
    /// <c>f SRC DST FLOW</c> per arc (1-based, in the problem's arc order) when optimal; otherwise the single line
    /// <c>s STATUS</c> (INFEASIBLE, UNBALANCED, BAD_COST_RANGE, BAD_CAPACITY_RANGE, NOT_SOLVED).
    /// </summary>
    /// <param name="problem">The problem the solution belongs to (for the arcs' end points).</param>
    /// <param name="solution">The solution (from <see cref="SolveDimacs(DimacsProblem)"/>).</param>
    /// <returns>The text to print.</returns>
    public static string FormatSolution(DimacsProblem problem, DimacsSolution solution)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(solution);
        var inv = CultureInfo.InvariantCulture;
        if (solution.Status != MinCostFlowStatus.Optimal) return $"s {StatusWord(solution.Status)}\n";
        if (solution.Flows.Length != problem.ArcCount)
            throw new ArgumentException($"solution has {solution.Flows.Length} flows, the problem {problem.ArcCount} arcs", nameof(solution));
        var text = new StringBuilder();
        text.Append(inv, $"s {solution.Cost}\n");
        for (int a = 0; a < problem.ArcCount; a++)
            text.Append(inv, $"f {problem.Tails[a] + 1} {problem.Heads[a] + 1} {solution.Flows[a]}\n");
        return text.ToString();
    }

    /// <summary>
    /// Solves a DIMACS problem with <see cref="MinCostFlow.Solve"/> after removing lower bounds (see the class summary),
    /// and maps the answer back: flows per original arc, cost including sum_a Lower[a] * UnitCosts[a].
    /// </summary>
    /// <param name="problem">The problem (0-based).</param>
    /// <returns>Status, cost, flows [m] and potentials [n]; all zero unless optimal.</returns>
    /// <exception cref="ArgumentException">Array lengths disagree, a node index is out of range, or a lower bound is
    /// negative or above its capacity.</exception>
    public static DimacsSolution SolveDimacs(DimacsProblem problem) => SolveDimacs(problem, flow =>
    {
        var solver = MinCostFlow.FromProblem(flow);
        var status = solver.Solve();
        return new DimacsSolution(status, solver.OptimalCost(), solver.Flows(), solver.Potentials());
    });

    /// <summary>
    /// Like <see cref="SolveDimacs(DimacsProblem)"/>, with another solver for the problem without lower bounds (OR-Tools,
    /// LEMON): <paramref name="solve"/> gets that <see cref="FlowProblem"/> and answers in the terms of <see cref="DimacsSolution"/>
    /// (status; cost, flows and potentials of that problem, all zero unless optimal).
    /// </summary>
    /// <param name="problem">The problem (0-based).</param>
    /// <param name="solve">The solver for the problem without lower bounds.</param>
    /// <returns>Status, cost, flows [m] and potentials [n] of the original problem; all zero unless optimal.</returns>
    /// <exception cref="ArgumentException">Array lengths disagree, a node index is out of range, or a lower bound is
    /// negative or above its capacity.</exception>
    public static DimacsSolution SolveDimacs(DimacsProblem problem, Func<FlowProblem, DimacsSolution> solve)
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(solve);
        int n = problem.NodeCount, m = problem.ArcCount;

        // Step 1: validate.
        if (n < 0) throw new ArgumentException($"NodeCount is {n}, must be >= 0", nameof(problem));
        if (problem.Heads.Length != m || problem.Lower.Length != m || problem.Capacities.Length != m || problem.UnitCosts.Length != m)
            throw new ArgumentException("Tails, Heads, Lower, Capacities and UnitCosts must have the same length", nameof(problem));
        if (problem.Supplies.Length != n)
            throw new ArgumentException($"Supplies has length {problem.Supplies.Length}, NodeCount is {n}", nameof(problem));
        for (int a = 0; a < m; a++)
        {
            if ((uint)problem.Tails[a] >= (uint)n || (uint)problem.Heads[a] >= (uint)n)
                throw new ArgumentException($"arc {a} ({problem.Tails[a]} -> {problem.Heads[a]}) names a node outside 0..{n - 1}", nameof(problem));
            if (problem.Lower[a] < 0 || problem.Lower[a] > problem.Capacities[a])
                throw new ArgumentException($"arc {a}: lower bound {problem.Lower[a]} outside 0..{problem.Capacities[a]}", nameof(problem));
        }

        // Step 2: substitute x = Lower + x'. Capacity u - l; supply(tail) -= l; supply(head) += l; cost offset += l * c.
        var shiftedSupply = new BigInteger[n];
        for (int v = 0; v < n; v++) shiftedSupply[v] = problem.Supplies[v];
        var residualCapacity = new long[m];
        BigInteger offset = BigInteger.Zero;
        for (int a = 0; a < m; a++)
        {
            long l = problem.Lower[a];
            residualCapacity[a] = problem.Capacities[a] - l; // 0 <= l <= u, so no overflow
            shiftedSupply[problem.Tails[a]] -= l;
            shiftedSupply[problem.Heads[a]] += l;
            offset += new BigInteger(l) * problem.UnitCosts[a];
        }
        var supplies = new long[n];
        for (int v = 0; v < n; v++)
        {
            if (shiftedSupply[v] > long.MaxValue || shiftedSupply[v] < long.MinValue)
                return Failed(MinCostFlowStatus.BadCapacityRange, n, m);
            supplies[v] = (long)shiftedSupply[v];
        }

        // Step 3: solve the problem without lower bounds.
        var answer = solve(new FlowProblem(n, problem.Tails, problem.Heads, residualCapacity, problem.UnitCosts, supplies));
        if (answer.Status != MinCostFlowStatus.Optimal) return Failed(answer.Status, n, m);

        // Step 4: map back. x = l + x' <= u fits; the cost gains the offset and must still fit.
        var flows = new long[m];
        for (int a = 0; a < m; a++) flows[a] = problem.Lower[a] + answer.Flows[a];
        BigInteger cost = offset + answer.Cost;
        if (cost > long.MaxValue || cost < long.MinValue) return Failed(MinCostFlowStatus.BadCostRange, n, m);
        return new DimacsSolution(MinCostFlowStatus.Optimal, (long)cost, flows, answer.Potentials);
    }

    /// <summary>The upper-case word for a status in a solution's <c>s</c> line, e.g. BAD_COST_RANGE.</summary>
    /// <param name="status">The status.</param>
    /// <returns>OPTIMAL, INFEASIBLE, UNBALANCED, BAD_COST_RANGE, BAD_CAPACITY_RANGE or NOT_SOLVED.</returns>
    public static string StatusWord(MinCostFlowStatus status) => status switch
    {
        MinCostFlowStatus.Optimal => "OPTIMAL",
        MinCostFlowStatus.Infeasible => "INFEASIBLE",
        MinCostFlowStatus.Unbalanced => "UNBALANCED",
        MinCostFlowStatus.BadCostRange => "BAD_COST_RANGE",
        MinCostFlowStatus.BadCapacityRange => "BAD_CAPACITY_RANGE",
        _ => "NOT_SOLVED",
    };

    // ---- Helpers. ----

    private static DimacsSolution Failed(MinCostFlowStatus status, int n, int m) =>
        new(status, 0, new long[m], new long[n]);

    private static void ExpectFields(string[] fields, int count, string form, int lineNumber)
    {
        if (fields.Length != count)
            throw new DimacsFormatException(lineNumber, $"'{fields[0]}' line needs {count} fields ({form}), got {fields.Length}");
    }

    private static void RequireProblemLine(int problemLine, string what, int lineNumber)
    {
        if (problemLine == 0)
            throw new DimacsFormatException(lineNumber, $"{what} before the p line: missing p line (p min NODES ARCS)");
    }

    private static long ParseInteger(string field, string name, int lineNumber)
    {
        if (!long.TryParse(field, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            throw new DimacsFormatException(lineNumber, $"{name} '{field}' is not a 64-bit integer");
        return value;
    }

    private static int ParseNode(string field, string name, int nodeCount, int lineNumber)
    {
        long id = ParseInteger(field, name, lineNumber);
        if (id < 1 || id > nodeCount)
            throw new DimacsFormatException(lineNumber, $"{name} {id} is out of range 1..{nodeCount}");
        return (int)(id - 1);
    }
}
