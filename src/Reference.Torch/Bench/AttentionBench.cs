using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Reference.Harness.Bench;
using Reference.Harness.Registry;
using Reference.Kernels.Attention;
using TorchSharp;

namespace Reference.Torch.Bench;

/// <summary>
/// <c>reference bench attention</c>: float32 attention forward on identical random inputs by the project's
/// FlashAttention kernel (<c>kernel</c>), its split-KV path (<c>split-kv</c>, 4 splits), and libtorch's CPU
/// <c>torch.nn.functional.scaled_dot_product_attention</c> through TorchSharp (<c>libtorch sdpa</c>), all on
/// <see cref="Environment.ProcessorCount"/> threads (libtorch's intra-op threads are set to it). The solvers of one size
/// take turns, one run each per round; each reports its median and GFLOP/s by the standard count 4 B H Tq Tk D (half of
/// it when causal).
/// </summary>
/// <remarks>
/// Sizes are written <c>B1H8T2048D64</c> (batch, heads, sequence length, head dimension), with a trailing <c>c</c> for
/// causal. Defaults: B1 H8, T in {512, 2048, 8192}, D in {64, 128}, causal and not. Each solver runs once untimed
/// per size below 1e11 flops (warm-up); larger sizes run at most 3 timed rounds. The notes give the largest
/// |out - kernel's out| of the other solvers, so that a reader sees they computed the same thing.
/// </remarks>
public sealed partial class AttentionBench : IBench
{
    /// <summary>The splits of the <c>split-kv</c> solver.</summary>
    public const int Splits = 4;

    /// <summary>The default sizes.</summary>
    public static IReadOnlyList<string> DefaultSizes { get; } =
    [
        "B1H8T512D64", "B1H8T512D64c", "B1H8T512D128", "B1H8T512D128c",
        "B1H8T2048D64", "B1H8T2048D64c", "B1H8T2048D128", "B1H8T2048D128c",
        "B1H8T8192D64", "B1H8T8192D64c", "B1H8T8192D128", "B1H8T8192D128c",
    ];

    /// <summary>Adds the benchmark to <see cref="BenchRegistry"/>; running it again does nothing.</summary>
    public static void Register() => BenchRegistry.Add(new AttentionBench());

    /// <inheritdoc/>
    public string Name => "attention";

    /// <inheritdoc/>
    public string Summary =>
        "float32 attention forward: the FlashAttention kernel and its split-KV path against libtorch's CPU scaled_dot_product_attention; sizes B1H8T2048D64 (c: causal)";

    /// <summary>One parsed size.</summary>
    /// <param name="Batch">B.</param>
    /// <param name="Heads">H.</param>
    /// <param name="Length">T (queries and keys).</param>
    /// <param name="Dim">D (also Dv).</param>
    /// <param name="Causal">Causal masking.</param>
    public sealed record Size(int Batch, int Heads, int Length, int Dim, bool Causal)
    {
        /// <summary>The standard flop count: 4 B H T^2 D, half of it when causal.</summary>
        public double Flops => 4.0 * Batch * Heads * Length * (double)Length * Dim * (Causal ? 0.5 : 1.0);

        /// <inheritdoc/>
        public override string ToString() =>
            string.Create(CultureInfo.InvariantCulture, $"B{Batch}H{Heads}T{Length}D{Dim}{(Causal ? "c" : "")}");
    }

    /// <summary>Parses <c>B1H8T2048D64</c> or <c>B1H8T2048D64c</c>.</summary>
    /// <param name="text">The size.</param>
    /// <exception cref="InputException">It does not parse or a number is out of range.</exception>
    public static Size ParseSize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var m = SizePattern().Match(text);
        if (!m.Success)
        {
            throw new InputException($"attention bench size '{text}' is not of the form B1H8T2048D64 (a trailing c: causal)");
        }
        int Part(int group) => int.TryParse(m.Groups[group].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1
            ? n
            : throw new InputException($"attention bench size '{text}': every number must be between 1 and {int.MaxValue}");
        var size = new Size(Part(1), Part(2), Part(3), Part(4), m.Groups[5].Value == "c");
        if ((long)size.Batch * size.Heads * size.Length * size.Dim > int.MaxValue / 2)
        {
            throw new InputException($"attention bench size '{text}' is too large (B H T D must stay below 2^30)");
        }
        return size;
    }

    /// <inheritdoc/>
    public BenchRecord Run(BenchRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var sizes = (request.Sizes.Count == 0 ? DefaultSizes : request.Sizes).Select(ParseSize).ToList();
        var machine = BenchMachine.Current();
        TorchDevice.EnsureLoaded();
        int threads = Environment.ProcessorCount;
        torch.set_num_threads(threads);
        var cases = new List<BenchCase>();
        foreach (var size in sizes)
        {
            cases.AddRange(RunSize(size, request, threads));
        }
        return new BenchRecord(Name, machine, cases);
    }

    private static List<BenchCase> RunSize(Size size, BenchRequest request, int threads)
    {
        // 1. Inputs: q, k, v uniform in [-1, 1), [B, H, T, D] row-major, from the seed and the size.
        var random = new Random(HashCode.Combine(request.Seed, size.ToString().GetHashCode(StringComparison.Ordinal)));
        int n = size.Batch * size.Heads * size.Length * size.Dim;
        float[] Uniform()
        {
            var x = new float[n];
            for (int i = 0; i < n; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
            return x;
        }
        float[] q = Uniform(), k = Uniform(), v = Uniform();
        var shape = new AttentionShape(size.Batch, size.Heads, size.Heads, size.Length, size.Length, size.Dim, size.Dim);
        var options = new FlashAttentionOptions { Causal = size.Causal };
        long[] dims = [size.Batch, size.Heads, size.Length, size.Dim];
        using var scope = torch.NewDisposeScope();
        var tq = torch.tensor(q, dims);
        var tk = torch.tensor(k, dims);
        var tv = torch.tensor(v, dims);

        // 2. The solvers: each fills its output buffer.
        var outputs = new float[3][];
        var lse = new float[size.Batch * size.Heads * size.Length];
        var solvers = new (string Name, Action<float[]> Run)[]
        {
            ("kernel", o => FlashAttention.Forward(q, k, v, shape, options, o, lse)),
            ("split-kv", o => FlashAttention.SplitKv(q, k, v, shape, options, Splits, o, lse)),
            ("libtorch sdpa", o =>
            {
                using var inner = torch.NewDisposeScope();
                var result = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, null, 0.0, size.Causal);
                result.data<float>().CopyTo(o, 0);
            }),
        };
        for (int s = 0; s < solvers.Length; s++) outputs[s] = new float[n];

        // 3. Rounds: every solver once per round, in turn (one untimed round first below 1e11 flops).
        bool large = size.Flops > 1e11;
        int rounds = large ? Math.Min(request.Repeats, 3) : request.Repeats;
        var times = solvers.Select(_ => new List<double>()).ToArray();
        for (int round = large ? 0 : -1; round < rounds; round++)
        {
            for (int s = 0; s < solvers.Length; s++)
            {
                if (round <= 0) request.Progress($"{size} {solvers[s].Name}{(round < 0 ? " (warm-up)" : "")}");
                var clock = Stopwatch.StartNew();
                solvers[s].Run(outputs[s]);
                double ms = clock.Elapsed.TotalMilliseconds;
                if (round >= 0) times[s].Add(ms);
            }
        }

        // 4. Medians, GFLOP/s and the agreement with the kernel's output.
        var cases = new List<BenchCase>();
        for (int s = 0; s < solvers.Length; s++)
        {
            double median = Median(times[s]);
            string note = s == 0
                ? $"{threads} threads"
                : string.Create(CultureInfo.InvariantCulture, $"{threads} threads; max |out - kernel| = {MaxDifference(outputs[s], outputs[0]):G3}");
            cases.Add(new BenchCase(size.ToString(), solvers[s].Name, median, times[s].Count, size.Flops / median / 1e6, null, note));
        }
        return cases;
    }

    private static double Median(List<double> x)
    {
        var sorted = x.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static double MaxDifference(float[] a, float[] b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }

    [GeneratedRegex(@"^B(\d+)H(\d+)T(\d+)D(\d+)(c?)$")]
    private static partial Regex SizePattern();
}
