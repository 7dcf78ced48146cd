using Reference.Harness.Comparison;
using Reference.Harness.Tensors;
using Reference.Numerics;

namespace Reference.Harness.Registry;

/// <summary>A function from a checked call to named output arrays.</summary>
/// <param name="call">The bound inputs and parameters.</param>
/// <returns>The outputs by name.</returns>
public delegate IReadOnlyDictionary<string, NdArray> AlgorithmFunction(AlgorithmCall call);

/// <summary>An optimized implementation of an algorithm, checked against the reference.</summary>
/// <param name="Name">The name used by <c>--path</c> and in the selfcheck table.</param>
/// <param name="Doc">One line: what it is (precision, parallelism).</param>
/// <param name="Run">The implementation.</param>
public sealed record OptimizedPath(string Name, string Doc, AlgorithmFunction Run)
{
    /// <summary>Which calls the path implements, when it covers only some parameter values (e.g. one method of several);
    /// null means every call. Selfcheck runs the path only on the cases it supports.</summary>
    public Func<AlgorithmCall, bool>? Supports { get; init; }

    /// <summary>The devices the path can run on (<see cref="Devices.Known"/>); <c>--device</c> must name one of them.
    /// The default: <c>cpu</c> only.</summary>
    public IReadOnlyList<string> Devices { get; init; } = [Registry.Devices.Cpu];

    /// <summary>
    /// Why the path cannot run on one of its <see cref="Devices"/> on this machine (e.g. <c>cuda</c> where no GPU or no
    /// CUDA build of its library is present), as one line; null when it can. Null (the default): it runs on each of its
    /// devices. <c>run</c>, <c>check</c> and <c>selfcheck</c> ask it before any work (<see cref="Algorithm.CheckAvailable"/>),
    /// so an unusable device exits 2 with this reason instead of failing every case.
    /// </summary>
    public Func<string, string?>? Unavailable { get; init; }
}

/// <summary>The devices a path can run on (<c>--device cpu|cuda</c>).</summary>
public static class Devices
{
    /// <summary>The host CPU: every path runs here.</summary>
    public const string Cpu = "cpu";

    /// <summary>An NVIDIA GPU through CUDA (the <c>torch</c> path with a CUDA build of libtorch, the <c>gpu</c> path).</summary>
    public const string Cuda = "cuda";

    /// <summary>Every device name <c>--device</c> accepts.</summary>
    public static IReadOnlyList<string> Known { get; } = [Cpu, Cuda];

    /// <summary>Checks a <c>--device</c> value.</summary>
    /// <param name="device">The value.</param>
    /// <returns>The device name.</returns>
    /// <exception cref="InputException">Not a known device.</exception>
    public static string Parse(string device) =>
        Known.Contains(device) ? device : throw new InputException($"option '--device' = '{device}' is not a device; devices: {string.Join(", ", Known)}");
}

/// <summary>What a checker sees: the call, the reference's outputs, and the candidate's outputs.</summary>
/// <param name="Call">The bound inputs and parameters.</param>
/// <param name="Expected">The reference outputs (float outputs in f64).</param>
/// <param name="Candidate">The candidate's outputs: only the algorithm's outputs that it contains.</param>
/// <remarks>
/// Precision is per array (README, "Precision"): <see cref="FormatOf"/> gives the format each float output is judged in,
/// and <see cref="Format"/> the one that index outputs' near-ties are judged in.
/// </remarks>
public sealed record CheckContext(
    AlgorithmCall Call,
    IReadOnlyDictionary<string, NdArray> Expected,
    IReadOnlyDictionary<string, NdArray> Candidate)
{
    /// <summary>
    /// The precision a candidate's decisions (index outputs: experts, tokens, selected blocks) are judged in: the least
    /// precise of its float outputs (each as <see cref="Formats.Effective"/>: a candidate that rounds any of its results to
    /// bfloat16 may have ranked in it), or the inputs' (<see cref="AlgorithmCall.InputFormat"/>) when it has none.
    /// </summary>
    public NumberFormat Format => format ??= Candidate.Values.Any(a => a.IsFloatingPoint)
        ? Candidate.Values.Where(a => a.IsFloatingPoint).Select(Formats.Effective).Max()
        : Call.InputFormat; // only when needed: it reads every input value

    /// <summary>
    /// The precision the float output <paramref name="name"/> is judged in: the precision its values carry
    /// (<see cref="Formats.Effective"/>: its dtype, or a narrower format that holds every value, as when a bfloat16 result
    /// is saved as float32 or a float32 loss as a float64 scalar). A non-float or absent output gets <see cref="Format"/>.
    /// </summary>
    /// <param name="name">The output's name.</param>
    /// <returns>The format for that output's tolerance.</returns>
    public NumberFormat FormatOf(string name) =>
        Candidate.TryGetValue(name, out var array) && array.IsFloatingPoint ? Formats.Effective(array) : Format;

    private NumberFormat? format;
}

/// <summary>A generated case for selfcheck and the generic properties.</summary>
/// <param name="Name">A short description, e.g. "seed 7: N=97 E=8 k=3 (ties)".</param>
/// <param name="Inputs">The input arrays.</param>
/// <param name="Parameters">Parameter values as text.</param>
public sealed record GeneratedCase(string Name, IReadOnlyDictionary<string, NdArray> Inputs, IReadOnlyDictionary<string, string> Parameters);

/// <summary>
/// One registered algorithm (proofs/cli.md, Definition: Algorithm entries): its name, parameters, input and output arrays, its reference,
/// its optimized paths, its validator and its case generator. The CLI, selfcheck, golden data and generic tests read it.
/// </summary>
public sealed class Algorithm
{
    /// <summary>The CLI name, e.g. <c>topk</c>.</summary>
    public required string Name { get; init; }

    /// <summary>One line for <c>reference list</c>.</summary>
    public required string Summary { get; init; }

    /// <summary>Where the semantics are written, e.g. "proofs/topk.md, Definition".</summary>
    public required string Section { get; init; }

    /// <summary>The parameters.</summary>
    public required IReadOnlyList<ParameterSpec> Parameters { get; init; }

    /// <summary>The input arrays.</summary>
    public required IReadOnlyList<InputSpec> Inputs { get; init; }

    /// <summary>The output arrays.</summary>
    public required IReadOnlyList<OutputSpec> Outputs { get; init; }

    /// <summary>The reference implementation (double precision).</summary>
    public required AlgorithmFunction Reference { get; init; }

    /// <summary>
    /// What <c>check</c> judges candidates against, when it is not the reference's run itself: a faster computation whose
    /// outputs are proven to be ones the reference could return (e.g. an optimum certified exactly), falling back to the
    /// reference otherwise. Null: the reference.
    /// </summary>
    public AlgorithmFunction? Oracle { get; init; }

    /// <summary>The optimized paths: those declared with the algorithm, then those added by <see cref="AddPath"/> (e.g. the
    /// <c>torch</c> and <c>gpu</c> paths, which live in their own assemblies so that the library does not need libtorch).</summary>
    public IReadOnlyList<OptimizedPath> Paths
    {
        get => paths;
        init => paths = value.ToArray();
    }

    private OptimizedPath[] paths = [];

    private readonly Lock pathsLock = new();

    /// <summary>
    /// Adds an optimized path that lives outside the harness (an assembly that registers its paths at start-up). Adding a
    /// path of the same name and documentation again does nothing, so registration may run more than once.
    /// </summary>
    /// <param name="path">The path.</param>
    /// <exception cref="ArgumentException">Another path of that name exists, or the name is <c>reference</c>.</exception>
    public void AddPath(OptimizedPath path)
    {
        ArgumentNullException.ThrowIfNull(path);
        lock (pathsLock)
        {
            if (paths.FirstOrDefault(p => p.Name == path.Name) is { } existing)
            {
                if (existing.Doc == path.Doc)
                {
                    return;
                }
                throw new ArgumentException($"{Name} already has a path '{path.Name}'", nameof(path));
            }
            if (path.Name == "reference")
            {
                throw new ArgumentException("'reference' is the reference, not an optimized path", nameof(path));
            }
            paths = [.. paths, path];
        }
    }

    /// <summary>The validator for <see cref="OutputComparison.Validated"/> outputs; required when there are any. It returns
    /// one report for each validated output the candidate contains.</summary>
    public IValidator? Validate { get; init; }

    /// <summary>The tolerance policy for a float output, given the candidate's precision; the default is the allclose preset.</summary>
    public Func<string, NumberFormat, TolerancePolicy> Tolerance { get; init; } = (_, format) => AllClosePolicy.For(format);

    /// <summary>
    /// Optional: judges the <see cref="OutputComparison.Tolerance"/> outputs with the whole check context instead of
    /// comparing each with <see cref="Tolerance"/>. Use it when the bound depends on the inputs (the baseline policy,
    /// derived error bounds); it may fall back on <see cref="Tolerance"/> for some formats. Null (the default): every
    /// Tolerance output is compared with <c>Tolerance(name, format)</c>.
    /// </summary>
    /// <remarks>Its <see cref="IValidator.Judge"/> returns exactly one report for each <see cref="OutputComparison.Tolerance"/>
    /// output in <see cref="CheckContext.Candidate"/>, named after it.</remarks>
    public IValidator? CompareInContext { get; init; }

    /// <summary>Generates a random case from a seed; deterministic for a given seed.</summary>
    public required Func<int, GeneratedCase> Generate { get; init; }

    /// <summary>Checks input arrays against the specs and binds parameters.</summary>
    /// <param name="inputs">The arrays, by name (extra arrays are ignored).</param>
    /// <param name="parameters">Raw parameter values.</param>
    /// <param name="source">The input file, for messages.</param>
    /// <exception cref="InputException">A required array is missing, or an array has the wrong kind, rank or size.</exception>
    public AlgorithmCall Bind(IReadOnlyDictionary<string, NdArray> inputs, IEnumerable<KeyValuePair<string, string>> parameters, string source) =>
        Bind(inputs, parameters, source, Devices.Cpu);

    /// <summary>Checks input arrays against the specs and binds parameters, for optimized paths that run on
    /// <paramref name="device"/>.</summary>
    /// <param name="inputs">The arrays, by name (extra arrays are ignored).</param>
    /// <param name="parameters">Raw parameter values.</param>
    /// <param name="source">The input file, for messages.</param>
    /// <param name="device">The device (<see cref="Devices"/>).</param>
    /// <exception cref="InputException">A required array is missing, an array has the wrong kind, rank or size, or the
    /// device is unknown.</exception>
    public AlgorithmCall Bind(IReadOnlyDictionary<string, NdArray> inputs, IEnumerable<KeyValuePair<string, string>> parameters, string source, string device)
    {
        device = Devices.Parse(device);
        ArgumentNullException.ThrowIfNull(inputs);
        var values = ParameterValues.Bind(Parameters, parameters);
        var dims = new Dictionary<string, (int Size, string From)>(StringComparer.Ordinal);
        var used = new Dictionary<string, NdArray>(StringComparer.Ordinal);
        foreach (var spec in Inputs)
        {
            if (!inputs.TryGetValue(spec.Name, out var array))
            {
                if (!spec.Optional)
                {
                    throw new InputException($"{source}: array '{spec.Name}' is missing ({Name} needs {Describe(spec)})");
                }
                continue;
            }
            CheckKind(spec, array, source);
            var letters = spec.Shape.Length == 0 ? Array.Empty<string>() : spec.Shape.Split(',');
            if (array.Rank != letters.Length)
            {
                throw new InputException(
                    $"{source}: array '{spec.Name}' has shape {array.ShapeText} (rank {array.Rank}) but {Name} needs rank {letters.Length} [{spec.Shape}]");
            }
            for (int d = 0; d < letters.Length; d++)
            {
                string letter = letters[d].Trim();
                if (letter == "_")
                {
                    continue;
                }
                if (dims.TryGetValue(letter, out var bound) && bound.Size != array.Shape[d])
                {
                    throw new InputException(
                        $"{source}: array '{spec.Name}' has shape {array.ShapeText}, so {letter} = {array.Shape[d]}, but {bound.From} gives {letter} = {bound.Size}");
                }
                dims[letter] = (array.Shape[d], $"'{spec.Name}'");
            }
            if (array.Length == 0)
            {
                int zero = array.Shape.ToList().IndexOf(0);
                string what = letters[zero].Trim() == "_" ? $"dimension {zero} is 0" : $"so {letters[zero].Trim()} = 0";
                throw new InputException($"{source}: array '{spec.Name}' has shape {array.ShapeText}, {what}: an empty problem is not valid input");
            }
            used[spec.Name] = array;
        }
        return new AlgorithmCall(used, values, source) { Device = device };
    }

    /// <summary>Runs the reference, translating its argument errors into <see cref="InputException"/>s that name the source.</summary>
    public IReadOnlyDictionary<string, NdArray> RunReference(AlgorithmCall call) => Guarded(Reference, call);

    /// <summary>The outputs <c>check</c> judges against: <see cref="Oracle"/> when there is one, else the reference.</summary>
    public IReadOnlyDictionary<string, NdArray> RunOracle(AlgorithmCall call) => Guarded(Oracle ?? Reference, call);

    /// <summary>Runs the reference or a named optimized path.</summary>
    /// <exception cref="InputException">No such path, or the implementation rejects the inputs.</exception>
    public IReadOnlyDictionary<string, NdArray> Run(AlgorithmCall call, string path)
    {
        ArgumentNullException.ThrowIfNull(call);
        if (path == "reference")
        {
            return RunReference(call);
        }
        var p = Paths.FirstOrDefault(x => x.Name == path)
            ?? throw new InputException($"{Name} has no path '{path}'; paths: {string.Join(", ", PathNames)}");
        CheckAvailable(path, call.Device);
        return Guarded(p.Run, call);
    }

    /// <summary>
    /// Checks, before any work, that a path (or <c>reference</c>) can run on a device on this machine: the device is one
    /// of the path's <see cref="OptimizedPath.Devices"/>, and the path's <see cref="OptimizedPath.Unavailable"/> gives no
    /// reason against it.
    /// </summary>
    /// <param name="path">The path's name.</param>
    /// <param name="device">The device (<see cref="Devices"/>).</param>
    /// <exception cref="InputException">No such path, a device it does not run on, or one unavailable here (the
    /// message is the path's one-line reason).</exception>
    public void CheckAvailable(string path, string device)
    {
        var devices = DevicesOf(path);
        if (!devices.Contains(device))
        {
            throw new InputException(path == "reference"
                ? $"option '--device' = '{device}' needs an optimized --path (the reference runs on the cpu)"
                : $"{Name}'s path '{path}' does not run on --device {device}; it runs on {string.Join(", ", devices)}");
        }
        if (Paths.FirstOrDefault(x => x.Name == path)?.Unavailable?.Invoke(device) is { } reason)
        {
            throw new InputException(reason);
        }
    }

    /// <summary>"reference" followed by the optimized paths' names.</summary>
    public IEnumerable<string> PathNames => new[] { "reference" }.Concat(Paths.Select(p => p.Name));

    /// <summary>The devices a path (or <c>reference</c>) runs on.</summary>
    /// <param name="path">The path's name.</param>
    /// <returns>Its devices; the reference runs on the CPU.</returns>
    /// <exception cref="InputException">No such path.</exception>
    public IReadOnlyList<string> DevicesOf(string path) => path == "reference"
        ? [Devices.Cpu]
        : (Paths.FirstOrDefault(x => x.Name == path) ?? throw new InputException($"{Name} has no path '{path}'; paths: {string.Join(", ", PathNames)}")).Devices;

    /// <summary>
    /// Judges a candidate's outputs against the reference: one report for each output the candidate contains. An output
    /// of the wrong shape, or of the wrong kind of dtype (a float array where the algorithm outputs integers), is an
    /// implementation bug: its report fails with the problem named (<see cref="ComparisonReport.Rejected"/>), and the
    /// other outputs are still judged. Integer and boolean outputs are reported without errors (<see cref="ComparisonReport.IsIntegral"/>).
    /// </summary>
    /// <param name="call">The bound call.</param>
    /// <param name="expected">The reference's outputs for the call.</param>
    /// <param name="candidate">The candidate's arrays (extra arrays are ignored).</param>
    /// <param name="candidateSource">The candidate file, for messages.</param>
    /// <exception cref="InputException">The candidate contains none of the outputs.</exception>
    public IReadOnlyList<ComparisonReport> Check(
        AlgorithmCall call, IReadOnlyDictionary<string, NdArray> expected, IReadOnlyDictionary<string, NdArray> candidate, string candidateSource)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(candidate);
        var present = new Dictionary<string, NdArray>(StringComparer.Ordinal);
        var rejected = new List<ComparisonReport>();
        foreach (var spec in Outputs)
        {
            if (!candidate.TryGetValue(spec.Name, out var c) || !expected.TryGetValue(spec.Name, out var e))
            {
                continue;
            }
            if (!c.Shape.SequenceEqual(e.Shape))
            {
                rejected.Add(ComparisonReport.Rejected(spec.Name, c.Length,
                    $"has shape {c.ShapeText} but the reference gives {e.ShapeText} [{spec.Shape}]"));
                continue;
            }
            if (!OutputKindMatches(spec.Kind, c))
            {
                rejected.Add(ComparisonReport.Rejected(spec.Name, c.Length,
                    $"has dtype {c.DType.ToString().ToLowerInvariant()} but {Name} outputs {spec.Kind.ToString().ToLowerInvariant()} values there"));
                continue;
            }
            present[spec.Name] = c;
        }
        if (present.Count == 0 && rejected.Count == 0)
        {
            throw new InputException(
                $"{candidateSource}: holds none of {Name}'s outputs ({string.Join(", ", Outputs.Select(o => o.Name))})");
        }
        var reports = new List<ComparisonReport>(rejected);
        if (present.Count == 0)
        {
            return reports;
        }
        var context = new CheckContext(call, expected, present);
        if (Outputs.Any(o => o.Comparison == OutputComparison.Validated && present.ContainsKey(o.Name)))
        {
            var validate = Validate ?? throw new InvalidOperationException($"{Name} has validated outputs but no validator");
            reports.AddRange(validate.Judge(context));
        }
        var tolerance = Outputs.Where(o => o.Comparison == OutputComparison.Tolerance && present.ContainsKey(o.Name))
            .Select(o => o.Name).ToList();
        if (CompareInContext is { } compareInContext && tolerance.Count > 0)
        {
            var judged = compareInContext.Judge(context);
            var names = judged.Select(r => r.ArrayName).OrderBy(n => n, StringComparer.Ordinal);
            if (!names.SequenceEqual(tolerance.OrderBy(n => n, StringComparer.Ordinal)))
            {
                throw new InvalidOperationException(
                    $"{Name}: the context comparer judged [{string.Join(", ", judged.Select(r => r.ArrayName))}] "
                    + $"but the candidate holds the tolerance outputs [{string.Join(", ", tolerance)}]");
            }
            reports.AddRange(judged);
        }
        foreach (var spec in Outputs)
        {
            if (spec.Comparison == OutputComparison.Validated || !present.TryGetValue(spec.Name, out var c)
                || (spec.Comparison == OutputComparison.Tolerance && CompareInContext is not null))
            {
                continue;
            }
            var e = expected[spec.Name];
            var policy = spec.Comparison == OutputComparison.Exact ? new ExactPolicy() : Tolerance(spec.Name, context.FormatOf(spec.Name));
            reports.Add(policy.Compare(spec.Name, c.ToDoubles(), e.ToDoubles(), e.Shape));
        }
        var integral = Outputs.Where(o => o.Kind != ArrayKind.Float).Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        return reports.Select(r => integral.Contains(r.ArrayName) && r.Problem is null ? r with { IsIntegral = true } : r).ToList();
    }

    /// <summary>
    /// Whether a candidate array's dtype is of the output's kind: any float dtype for floats; int32 or int64 for integers;
    /// bool, or integers holding only 0 and 1, for booleans (masks saved as int8/uint8/int32 are common).
    /// </summary>
    private static bool OutputKindMatches(ArrayKind kind, NdArray c) => kind switch
    {
        ArrayKind.Float => c.IsFloatingPoint,
        ArrayKind.Integer => c.DType is DType.I32 or DType.I64,
        _ => c.DType is DType.Bool
             || (c.DType is DType.U8 or DType.I32 or DType.I64 && c.ToDoubles().All(x => x is 0.0 or 1.0)),
    };

    private IReadOnlyDictionary<string, NdArray> Guarded(AlgorithmFunction f, AlgorithmCall call)
    {
        try
        {
            return f(call);
        }
        catch (ArgumentException ex)
        {
            // The references name the argument and the first offending index; prefix the file.
            string message = ex.Message;
            int paramNote = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (paramNote >= 0)
            {
                message = message[..paramNote];
            }
            throw new InputException($"{call.Source}: {message}", ex);
        }
        catch (Exception ex) when (ex is OutOfMemoryException or System.Runtime.InteropServices.ExternalException)
        {
            // A path that cannot run this input here (out of memory, or a native library's error such as libtorch's
            // allocator): a clear one-line reason and exit 2, never a crash (proofs/cli.md, Exit codes).
            string first = ex.Message.Split('\n', 2)[0].Trim();
            throw new InputException($"{call.Source}: {Name} could not run this input here ({ex.GetType().Name}: {first})", ex);
        }
    }

    private static void CheckKind(InputSpec spec, NdArray array, string source)
    {
        bool ok = spec.Kind switch
        {
            ArrayKind.Float => array.IsFloatingPoint,
            ArrayKind.Integer => array.DType is DType.I32 or DType.I64,
            _ => array.DType is DType.Bool || (array.DType == DType.U8 && array.Values<byte>().All(b => b <= 1)),
        };
        if (!ok)
        {
            throw new InputException($"{source}: array '{spec.Name}' has dtype {array.DType} but must be {spec.Kind.ToString().ToLowerInvariant()}");
        }
    }

    private static string Describe(InputSpec spec) => $"{spec.Kind.ToString().ToLowerInvariant()} [{spec.Shape}]";
}
