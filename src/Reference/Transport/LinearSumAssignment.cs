namespace Reference.Transport;

/// <summary>The result of <see cref="LinearSumAssignment.Solve"/>, as scipy returns it.</summary>
/// <param name="Rows">The assigned row indices, ascending (all rows when rows &lt;= columns).</param>
/// <param name="Columns">The column assigned to each entry of <paramref name="Rows"/>.</param>
/// <param name="Total">The sum of the matrix at the assigned cells (summed in row order).</param>
public sealed record LinearSumAssignmentResult(int[] Rows, int[] Columns, double Total);

/// <summary>
/// The linear sum assignment problem with <c>scipy.optimize.linear_sum_assignment</c> semantics: for a cost matrix [R, K],
/// assign min(R, K) rows to distinct columns minimizing (or, with <c>maximize</c>, maximizing) the total. Rectangular matrices
/// are allowed; the result lists rows in ascending order. Written from the classical Hungarian method in its shortest
/// augmenting path form (Kuhn 1955, Munkres 1957; Jonker and Volgenant 1987; Crouse 2016, the form scipy implements).
/// </summary>
/// <remarks>
/// <para>Arithmetic is double precision, as in scipy. On inputs whose sums are exact (for example values on a dyadic grid) the
/// result is exactly optimal; on general inputs it is optimal up to rounding in the dual potentials.</para>
/// <para>Ties: when several assignments are optimal this returns the one its augmentation order finds (rows in order, columns
/// scanned in index order, the lower column on equal distances); scipy may return another optimal assignment.</para>
/// </remarks>
public static class LinearSumAssignment
{
    /// <summary>Solves the assignment problem.</summary>
    /// <param name="cost">The matrix [R, K], finite.</param>
    /// <param name="maximize">Maximize the total instead of minimizing it.</param>
    /// <returns>Rows (ascending) and their columns, and the total.</returns>
    /// <exception cref="ArgumentException">An entry is NaN or infinite.</exception>
    public static LinearSumAssignmentResult Solve(double[,] cost, bool maximize = false)
    {
        ArgumentNullException.ThrowIfNull(cost);
        Guard.Finite(cost, nameof(cost));
        int rows = cost.GetLength(0), cols = cost.GetLength(1);

        // 1. Work on a matrix with no more rows than columns, as a minimization: transpose and/or negate.
        bool transposed = rows > cols;
        int r = transposed ? cols : rows, m = transposed ? rows : cols;
        var a = new double[r, m];
        for (int i = 0; i < r; i++)
        {
            for (int j = 0; j < m; j++)
            {
                double v = transposed ? cost[j, i] : cost[i, j];
                a[i, j] = maximize ? -v : v;
            }
        }

        // 2. Assign the rows one at a time by shortest augmenting paths.
        var columnOfRow = Assign(a);

        // 3. Back to the caller's orientation, rows ascending.
        var pairs = new List<(int Row, int Col)>();
        for (int i = 0; i < r; i++)
        {
            pairs.Add(transposed ? (columnOfRow[i], i) : (i, columnOfRow[i]));
        }
        pairs.Sort((x, y) => x.Row.CompareTo(y.Row));
        double total = 0;
        foreach (var (row, col) in pairs)
        {
            total += cost[row, col];
        }
        return new LinearSumAssignmentResult(pairs.Select(p => p.Row).ToArray(), pairs.Select(p => p.Col).ToArray(), total);
    }

    /// <summary>
    /// The Hungarian method for a [r, m] minimization with r &lt;= m. Dual potentials u (rows) and v (columns) keep every reduced
    /// cost a_ij - u_i - v_j &gt;= 0 and make it 0 on assigned cells. Row i is added by a Dijkstra search over columns on reduced
    /// costs from row i; the nearest free column ends an augmenting path, the potentials move by the distances, and the path
    /// flips. Each row costs O(r m), so O(r^2 m) in all.
    /// </summary>
    private static int[] Assign(double[,] a)
    {
        int r = a.GetLength(0), m = a.GetLength(1);
        var u = new double[r];                // row potentials
        var v = new double[m];                // column potentials
        var rowOfColumn = new int[m];         // the row assigned to each column, or -1
        Array.Fill(rowOfColumn, -1);

        for (int start = 0; start < r; start++)
        {
            // 2a. Dijkstra from row `start`: dist[j] = the shortest reduced length of an alternating path to column j,
            //     via[j] = the column before j on it (-1 when it starts at `start`).
            var dist = new double[m];
            var via = new int[m];
            var done = new bool[m];
            Array.Fill(dist, double.PositiveInfinity);
            int row = start, reachedFrom = -1, free = -1;
            double atRow = 0;                 // the distance to the current row
            while (free < 0)
            {
                // Relax the arcs from `row` to every open column.
                for (int j = 0; j < m; j++)
                {
                    if (done[j])
                    {
                        continue;
                    }
                    double through = atRow + a[row, j] - u[row] - v[j];
                    if (through < dist[j])
                    {
                        dist[j] = through;
                        via[j] = reachedFrom;
                    }
                }
                // Settle the nearest open column (the lower index on ties).
                int next = -1;
                for (int j = 0; j < m; j++)
                {
                    if (!done[j] && (next < 0 || dist[j] < dist[next]))
                    {
                        next = j;
                    }
                }
                done[next] = true;
                if (rowOfColumn[next] < 0)
                {
                    free = next;              // an augmenting path ends here
                }
                else
                {
                    row = rowOfColumn[next];  // continue from the row that holds this column
                    reachedFrom = next;
                    atRow = dist[next];
                }
            }

            // 2b. Update the potentials so that reduced costs stay >= 0 and the path's cells become tight:
            //     for each settled column j, v_j -= (dist[free] - dist[j]); for each row on the tree, u_i += (dist[free] - dist at it).
            double shortest = dist[free];
            u[start] += shortest;
            for (int j = 0; j < m; j++)
            {
                if (done[j] && j != free)
                {
                    double delta = shortest - dist[j];
                    v[j] -= delta;
                    u[rowOfColumn[j]] += delta;
                }
            }

            // 2c. Flip the path: walk back from the free column, shifting each column's row along.
            int col = free;
            while (true)
            {
                int previous = via[col];
                rowOfColumn[col] = previous < 0 ? start : rowOfColumn[previous];
                if (previous < 0)
                {
                    break;
                }
                col = previous;
            }
        }

        var columnOfRow = new int[r];
        for (int j = 0; j < m; j++)
        {
            if (rowOfColumn[j] >= 0)
            {
                columnOfRow[rowOfColumn[j]] = j;
            }
        }
        return columnOfRow;
    }
}
