using System.Diagnostics;
using System.Globalization;

namespace Reference.Harness.Bench;

/// <summary>One solver of an interleaved benchmark.</summary>
/// <param name="Name">The name in the record.</param>
/// <param name="Run">Solves once and returns its time in milliseconds (<see cref="Interleaved.Time"/> for an in-process
/// solver; an out-of-process peer returns the time it measured itself around the solve).</param>
/// <param name="Skip">Why it does not run, or null to run it.</param>
public sealed record TimedSolver(string Name, Func<double> Run, string? Skip = null);

/// <summary>A solver's timings: the median, the number of timed runs and their range, or why it did not run.</summary>
/// <param name="Name">The solver's name.</param>
/// <param name="MedianMs">The median of the timed runs in ms, or null when it did not run.</param>
/// <param name="Runs">Timed runs (0 when it did not run).</param>
/// <param name="MinMs">The fastest run.</param>
/// <param name="MaxMs">The slowest run.</param>
/// <param name="Calls">Calls per timed run (fast solvers are called several times per run, the run's time divided by them).</param>
/// <param name="Note">Why it did not run (skipped, or the exception it threw), else null.</param>
public sealed record InterleavedResult(string Name, double? MedianMs, int Runs, double MinMs, double MaxMs, int Calls, string? Note)
{
    /// <summary>"range a-b ms over R runs (c calls each)", or the note when it did not run.</summary>
    public string Describe() => MedianMs is null
        ? Note ?? "not run"
        : string.Create(CultureInfo.InvariantCulture, $"range {MinMs:0.###}-{MaxMs:0.###} ms over {Runs} runs{(Calls > 1 ? $" of {Calls} calls" : "")}");
}

/// <summary>
/// Timing with the solvers taking turns: one warm-up call each, then <c>repeats</c> rounds in which every solver runs once,
/// in order. On a shared machine a slow phase then falls on all solvers of a round alike, so their ratios compare like
/// with like; each solver's median and range are reported. A solver faster than <see cref="MinRunMs"/> is called
/// several times per run (the same count in every run), its run's time divided by the count.
/// </summary>
public static class Interleaved
{
    /// <summary>A timed run of a fast solver repeats its call until the run takes about this long.</summary>
    public const double MinRunMs = 5;

    /// <summary>The most calls in one timed run.</summary>
    public const int MaxCalls = 200;

    /// <summary>Times an in-process action with a stopwatch.</summary>
    /// <param name="action">The work.</param>
    /// <returns>Its wall time in ms.</returns>
    public static double Time(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>Runs the solvers taking turns.</summary>
    /// <param name="solvers">The solvers, in the order they take turns.</param>
    /// <param name="repeats">Timed runs per solver, at least 1.</param>
    /// <param name="progress">Called with each solver's name as its warm-up starts.</param>
    /// <returns>One result per solver, in order. A solver that throws is reported with the exception's message and no time.</returns>
    public static IReadOnlyList<InterleavedResult> Run(IReadOnlyList<TimedSolver> solvers, int repeats, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(solvers);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        int count = solvers.Count;
        var notes = solvers.Select(s => s.Skip).ToArray();
        var calls = new int[count];
        var times = solvers.Select(_ => new List<double>()).ToArray();
        for (int s = 0; s < count; s++)
        {
            if (notes[s] is not null)
            {
                continue;
            }
            progress?.Invoke(solvers[s].Name);
            double warm = Guarded(s, () => solvers[s].Run());
            calls[s] = double.IsNaN(warm) ? 0 : warm >= MinRunMs ? 1 : (int)Math.Min(MaxCalls, Math.Ceiling(MinRunMs / Math.Max(warm, 0.01)));
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        for (int r = 0; r < repeats; r++)
        {
            for (int s = 0; s < count; s++)
            {
                if (notes[s] is not null)
                {
                    continue;
                }
                double total = 0;
                for (int c = 0; c < calls[s] && notes[s] is null; c++)
                {
                    total += Guarded(s, () => solvers[s].Run());
                }
                if (notes[s] is null)
                {
                    times[s].Add(total / calls[s]);
                }
            }
        }
        var results = new List<InterleavedResult>();
        for (int s = 0; s < count; s++)
        {
            if (notes[s] is { } note || times[s].Count == 0)
            {
                results.Add(new InterleavedResult(solvers[s].Name, null, 0, double.NaN, double.NaN, 0, notes[s] ?? "not run"));
                continue;
            }
            var sorted = times[s].Order().ToList();
            results.Add(new InterleavedResult(solvers[s].Name, Median(sorted), sorted.Count, sorted[0], sorted[^1], calls[s], null));
        }
        return results;

        double Guarded(int s, Func<double> run)
        {
            try
            {
                return run();
            }
#pragma warning disable CA1031 // A solver that fails is reported in the record, not fatal to the other solvers' timings.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                notes[s] = $"failed: {ex.GetType().Name}: {ex.Message.Split('\n')[0]}";
                return double.NaN;
            }
        }
    }

    /// <summary>The median of sorted values (the mean of the middle two for an even count).</summary>
    /// <param name="sorted">Ascending, not empty.</param>
    public static double Median(IReadOnlyList<double> sorted)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
