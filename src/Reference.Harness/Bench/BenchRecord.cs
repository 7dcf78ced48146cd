using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Reference.Harness.Bench;

/// <summary>The machine a benchmark ran on, as far as the process can tell.</summary>
/// <param name="Cpu">The processor's model name (from /proc/cpuinfo on Linux), or "unknown".</param>
/// <param name="Cores">Logical processors available to the process.</param>
/// <param name="Os">The operating system's description.</param>
/// <param name="Runtime">The .NET runtime's description.</param>
/// <param name="Date">The UTC date of the run, yyyy-MM-dd.</param>
/// <param name="LoadAverage">The one-minute load average when the run started (Linux), or null: on a shared machine a
/// load above <paramref name="Cores"/> means other work took turns with the solvers, so only ratios within the run compare.</param>
public sealed record BenchMachine(
    [property: JsonPropertyName("cpu")] string Cpu,
    [property: JsonPropertyName("cores")] int Cores,
    [property: JsonPropertyName("os")] string Os,
    [property: JsonPropertyName("runtime")] string Runtime,
    [property: JsonPropertyName("date")] string Date,
    [property: JsonPropertyName("load_average")] double? LoadAverage = null)
{
    /// <summary>This machine, now.</summary>
    public static BenchMachine Current()
    {
        string cpu = "unknown";
        double? load = null;
        try
        {
            if (File.Exists("/proc/loadavg")
                && double.TryParse(File.ReadAllText("/proc/loadavg").Split(' ')[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double l))
            {
                load = l;
            }
            if (File.Exists("/proc/cpuinfo"))
            {
                var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
                if (line is not null && line.IndexOf(':', StringComparison.Ordinal) is int colon and >= 0)
                {
                    cpu = line[(colon + 1)..].Trim();
                }
            }
        }
        catch (IOException)
        {
            // Not every system exposes the model name; "unknown" says so.
        }
        return new BenchMachine(cpu, Environment.ProcessorCount, RuntimeInformation.OSDescription,
            RuntimeInformation.FrameworkDescription, DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), load);
    }
}

/// <summary>One solver on one size.</summary>
/// <param name="Size">The size, e.g. "16384/64/8" (N/E/k).</param>
/// <param name="Solver">The solver's name.</param>
/// <param name="MedianMs">The median wall time in milliseconds, or null when the solver did not run.</param>
/// <param name="Runs">How many timed runs the median is over (0 when it did not run).</param>
/// <param name="Gflops">GFLOP/s where a flop count applies (attention), else null.</param>
/// <param name="Objective">The objective of its result where there is one (MaxScore: total score), else null.</param>
/// <param name="Note">Why it did not run, or what else it reports.</param>
public sealed record BenchCase(
    [property: JsonPropertyName("size")] string Size,
    [property: JsonPropertyName("solver")] string Solver,
    [property: JsonPropertyName("median_ms")] double? MedianMs,
    [property: JsonPropertyName("runs")] int Runs,
    [property: JsonPropertyName("gflops")] double? Gflops,
    [property: JsonPropertyName("objective")] double? Objective,
    [property: JsonPropertyName("note")] string? Note);

/// <summary>
/// A benchmark record as <c>reference bench NAME --json FILE</c> writes it and data/bench/ keeps it:
/// <c>{"bench": NAME, "machine": {...}, "cases": [{"size", "solver", "median_ms", "runs", "gflops", ...}]}</c>.
/// The README's timing table is <see cref="Table"/> of the records in data/bench/, so every number it shows has a record.
/// </summary>
/// <param name="Bench">The benchmark's name, e.g. "maxscore".</param>
/// <param name="Machine">Where it ran.</param>
/// <param name="Cases">One entry per size and solver, solvers of a size in the order they ran.</param>
public sealed record BenchRecord(
    [property: JsonPropertyName("bench")] string Bench,
    [property: JsonPropertyName("machine")] BenchMachine Machine,
    [property: JsonPropertyName("cases")] IReadOnlyList<BenchCase> Cases)
{
    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The record of a MaxScore benchmark run.</summary>
    /// <param name="rows">The rows <see cref="MaxScoreBench.Run"/> returned.</param>
    /// <param name="machine">Where it ran.</param>
    public static BenchRecord FromMaxScore(IEnumerable<BenchRow> rows, BenchMachine machine)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var cases = rows.SelectMany(row => row.Timings.Select(t => new BenchCase(
            row.Size.ToString(), t.Solver,
            double.IsNaN(t.MedianMilliseconds) ? null : t.MedianMilliseconds,
            double.IsNaN(t.MedianMilliseconds) ? 0 : t.Repeats,
            null,
            double.IsNaN(t.Objective) ? null : t.Objective,
            t.Note))).ToList();
        return new BenchRecord("maxscore", machine, cases);
    }

    /// <summary>The record as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Options);

    /// <summary>Reads a record written by <see cref="ToJson"/>.</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="InvalidDataException">The file is not a benchmark record; the message names the file.</exception>
    public static BenchRecord Read(string path)
    {
        BenchRecord? record;
        try
        {
            record = JsonSerializer.Deserialize<BenchRecord>(File.ReadAllText(path), Options);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path}: not a benchmark record ({ex.Message})", ex);
        }
        if (record is null || string.IsNullOrEmpty(record.Bench) || record.Machine is null || record.Cases is null)
        {
            throw new InvalidDataException($"{path}: not a benchmark record (needs \"bench\", \"machine\" and \"cases\")");
        }
        return record;
    }

    /// <summary>
    /// A Markdown table of the records: one line per case, with the time as a ratio to the first solver of the same size
    /// in the same record (the solvers of one run took turns on the same machine, so only ratios within a run compare).
    /// </summary>
    /// <param name="records">The records, in the order to show them.</param>
    public static string Table(IEnumerable<BenchRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        var text = new StringBuilder();
        text.Append("| bench | date | size | solver | median | runs | vs first |\n");
        text.Append("|---|---|---|---|---|---|---|\n");
        foreach (var record in records)
        {
            foreach (var group in record.Cases.GroupBy(c => c.Size))
            {
                double? first = group.First().MedianMs;
                foreach (var c in group)
                {
                    string median = c.MedianMs is { } ms ? FormatMs(ms) : "not run";
                    string ratio = c.MedianMs is { } m && first is { } f && f > 0 ? (m / f).ToString("0.0", CultureInfo.InvariantCulture) + "x" : "";
                    text.Append(CultureInfo.InvariantCulture,
                        $"| {record.Bench} | {record.Machine.Date} | {c.Size} | {c.Solver} | {median} | {c.Runs} | {ratio} |\n");
                }
            }
        }
        return text.ToString();
    }

    private static string FormatMs(double ms) => ms >= 1000
        ? (ms / 1000).ToString("0.00", CultureInfo.InvariantCulture) + " s"
        : ms.ToString(ms >= 10 ? "0" : ms >= 1 ? "0.00" : "0.000", CultureInfo.InvariantCulture) + " ms";
}
