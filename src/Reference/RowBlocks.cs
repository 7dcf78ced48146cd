namespace Reference;

/// <summary>
/// The one way the fast paths and the validators run independent rows in parallel: blocks of consecutive rows, one task
/// per block. A row's body must read shared data only and write only its own row's entries; then the result does not
/// depend on the schedule or the number of threads, and callers that report problems do so in row order afterwards.
/// </summary>
public static class RowBlocks
{
    /// <summary>Rows per parallel task: enough to amortize scheduling for rows of a few hundred operations.</summary>
    private const int RowsPerBlock = 256;

    /// <summary>Runs <paramref name="row"/> for every row 0..n-1, in parallel blocks of consecutive rows.</summary>
    /// <param name="n">The number of rows.</param>
    /// <param name="row">The work of one row.</param>
    public static void For(int n, Action<int> row)
    {
        ArgumentNullException.ThrowIfNull(row);
        Parallel.For(0, (n + RowsPerBlock - 1) / RowsPerBlock, block =>
        {
            for (int i = block * RowsPerBlock, end = Math.Min(n, i + RowsPerBlock); i < end; i++)
            {
                row(i);
            }
        });
    }
}
