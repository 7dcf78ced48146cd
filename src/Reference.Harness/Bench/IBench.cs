using Reference.Harness.Registry;

namespace Reference.Harness.Bench;

/// <summary>What <c>reference bench NAME</c> was asked for.</summary>
/// <param name="Sizes">The sizes (<c>--size</c>, comma-separated, in the bench's own syntax), or empty for its defaults.</param>
/// <param name="Repeats">Timed runs per solver and size (<c>--repeats</c>); the median is reported.</param>
/// <param name="Seed">The seed of the generated inputs (<c>--seed</c>).</param>
/// <param name="Progress">Called with a short line as each size and solver starts.</param>
public sealed record BenchRequest(IReadOnlyList<string> Sizes, int Repeats, int Seed, Action<string> Progress);

/// <summary>
/// One benchmark of <c>reference bench NAME</c>: the project's paths and the peers available in process on the same
/// inputs, the solvers of one size taking turns, each reported by its median time (and GFLOP/s where a flop count
/// applies). Data for a reader, never a test: speed is not asserted.
/// </summary>
public interface IBench
{
    /// <summary>The name <c>reference bench</c> takes, e.g. "attention".</summary>
    string Name { get; }

    /// <summary>One line: what it times and against which peers, and the syntax of its sizes.</summary>
    string Summary { get; }

    /// <summary>Runs it.</summary>
    /// <param name="request">Sizes, repeats, seed.</param>
    /// <returns>The record: per size and solver the median time, runs and GFLOP/s, or a note saying why a solver did not run.</returns>
    /// <exception cref="InputException">A size does not parse.</exception>
    BenchRecord Run(BenchRequest request);

    /// <summary>Whether the results agree where they must (e.g. exact solvers' objectives); a bench that finds a
    /// disagreement makes <c>reference bench</c> exit 1.</summary>
    /// <param name="record">The record <see cref="Run"/> returned.</param>
    /// <returns>Null when they agree, else one line saying what disagrees.</returns>
    string? Disagreement(BenchRecord record) => null;
}

/// <summary>The benchmarks <c>reference bench</c> knows besides <c>maxscore</c>: each assembly adds its own at start-up
/// (e.g. the attention bench, which needs libtorch, lives with the torch path).</summary>
public static class BenchRegistry
{
    private static readonly Lock Gate = new();

    private static IBench[] benches = [];

    /// <summary>The registered benchmarks, in the order they were added.</summary>
    public static IReadOnlyList<IBench> All => benches;

    /// <summary>Adds a benchmark; adding one of the same name again does nothing.</summary>
    /// <param name="bench">The benchmark.</param>
    public static void Add(IBench bench)
    {
        ArgumentNullException.ThrowIfNull(bench);
        lock (Gate)
        {
            if (benches.All(b => b.Name != bench.Name))
            {
                benches = [.. benches, bench];
            }
        }
    }

    /// <summary>The benchmark of that name, or null.</summary>
    /// <param name="name">Its name.</param>
    public static IBench? Find(string name) => benches.FirstOrDefault(b => b.Name == name);
}
