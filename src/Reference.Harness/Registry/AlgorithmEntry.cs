using Reference.Harness.Comparison;
using Reference.Harness.Tensors;
using Reference.Numerics;

namespace Reference.Harness.Registry;

/// <summary>One path of a typed entry: the reference, an oracle or an optimized implementation, all returning the entry's
/// result record from the call and its parsed options.</summary>
/// <typeparam name="TOptions">The options record.</typeparam>
/// <typeparam name="TResult">The result record.</typeparam>
/// <param name="Name">The name used by <c>--path</c> and in the selfcheck table.</param>
/// <param name="Doc">One line: what it is (precision, parallelism).</param>
/// <param name="Run">The implementation.</param>
public sealed record PathOf<TOptions, TResult>(string Name, string Doc, Func<AlgorithmCall, TOptions, TResult> Run)
{
    /// <summary>Which calls the path implements; null means every call (<see cref="OptimizedPath.Supports"/>).</summary>
    public Func<AlgorithmCall, bool>? Supports { get; init; }

    /// <summary>The devices the path runs on (<see cref="OptimizedPath.Devices"/>); the default: <c>cpu</c> only.</summary>
    public IReadOnlyList<string> Devices { get; init; } = [Registry.Devices.Cpu];

    /// <summary>Why the path cannot run on a device on this machine, or null (<see cref="OptimizedPath.Unavailable"/>).</summary>
    public Func<string, string?>? Unavailable { get; init; }
}

/// <summary>
/// The typed declaration of one algorithm (one per algorithm): parameters declared once against its options record,
/// outputs declared once against its result record, and every path returning that result record. The untyped
/// <see cref="Algorithm"/> that the CLI, selfcheck, golden data and generic tests read is produced from it by
/// <see cref="ToAlgorithm"/>: options are parsed once per call, and every path's result is turned into named arrays and
/// checked against the output specs (kind of dtype, shape expression) before anyone sees it.
/// </summary>
/// <typeparam name="TOptions">The options record the reference takes.</typeparam>
/// <typeparam name="TResult">The result record every path returns.</typeparam>
public sealed class AlgorithmEntry<TOptions, TResult>
    where TResult : class
{
    /// <summary>The CLI name, e.g. <c>topk</c>.</summary>
    public required string Name { get; init; }

    /// <summary>One line for <c>reference list</c>.</summary>
    public required string Summary { get; init; }

    /// <summary>Where the semantics are written.</summary>
    public required string Section { get; init; }

    /// <summary>The options before any parameter is applied: a new record, with the values read from optional inputs
    /// (a bias, a mask) set.</summary>
    public required Func<AlgorithmCall, TOptions> Seed { get; init; }

    /// <summary>The parameters, in the order <c>reference list</c> prints them and the options are built.</summary>
    public required IReadOnlyList<Parameter<TOptions>> Parameters { get; init; }

    /// <summary>The input arrays.</summary>
    public required IReadOnlyList<InputSpec> Inputs { get; init; }

    /// <summary>The outputs, in the order they are written.</summary>
    public required IReadOnlyList<OutputSpec<TResult>> Outputs { get; init; }

    /// <summary>The reference implementation (double precision).</summary>
    public required Func<AlgorithmCall, TOptions, TResult> Reference { get; init; }

    /// <summary>What <c>check</c> judges against when it is not the reference (<see cref="Algorithm.Oracle"/>); null: the reference.</summary>
    public Func<AlgorithmCall, TOptions, TResult>? Oracle { get; init; }

    /// <summary>The optimized paths.</summary>
    public IReadOnlyList<PathOf<TOptions, TResult>> Paths { get; init; } = [];

    /// <summary>The validator for the validated outputs (<see cref="Algorithm.Validate"/>).</summary>
    public IValidator? Validate { get; init; }

    /// <summary>The validator for the tolerance outputs, judged in context (<see cref="Algorithm.CompareInContext"/>).</summary>
    public IValidator? CompareInContext { get; init; }

    /// <summary>The tolerance policy for a float output (<see cref="Algorithm.Tolerance"/>); null: the allclose preset.</summary>
    public Func<string, NumberFormat, TolerancePolicy>? Tolerance { get; init; }

    /// <summary>Generates a random case from a seed; deterministic for a given seed.</summary>
    public required Func<int, GeneratedCase> Generate { get; init; }

    /// <summary>The call's options: <see cref="Seed"/> with every parameter applied in order, built once per call
    /// (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    /// <param name="call">The bound call.</param>
    /// <returns>The options.</returns>
    /// <exception cref="InputException">A required parameter is absent.</exception>
    public TOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", this), () => Parameters.Aggregate(Seed(call), (options, p) => p.Apply(options, call.Parameters)));
    }

    /// <summary>The untyped algorithm the CLI, selfcheck and tests use.</summary>
    /// <returns>The algorithm.</returns>
    public Algorithm ToAlgorithm() => new()
    {
        Name = Name,
        Summary = Summary,
        Section = Section,
        Parameters = Parameters.Select(p => p.Spec).ToArray(),
        Inputs = Inputs,
        Outputs = Outputs.Select(o => o.Spec).ToArray(),
        Reference = call => Emit(call, Reference(call, Options(call)), "reference"),
        Oracle = Oracle is { } oracle ? call => Emit(call, oracle(call, Options(call)), "oracle") : null,
        Paths = Paths.Select(ToPath).ToArray(),
        Validate = Validate,
        CompareInContext = CompareInContext,
        Tolerance = Tolerance ?? ((_, format) => AllClosePolicy.For(format)),
        Generate = Generate,
    };

    /// <summary>
    /// The untyped path of a typed one: its result turned into named arrays and checked against the output specs
    /// (<see cref="Emit"/>). Assemblies that add paths to a registered algorithm (<see cref="Algorithm.AddPath"/>) use it.
    /// </summary>
    /// <param name="path">The typed path.</param>
    /// <returns>The path as the CLI, selfcheck and tests see it.</returns>
    public OptimizedPath ToPath(PathOf<TOptions, TResult> path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return new OptimizedPath(path.Name, path.Doc, call => Emit(call, path.Run(call, Options(call)), path.Name))
        {
            Supports = path.Supports,
            Devices = path.Devices,
            Unavailable = path.Unavailable,
        };
    }

    /// <summary>
    /// A path's result as named arrays, in the order of <see cref="Outputs"/>, each checked against its spec: a float,
    /// integer or bool dtype as declared, and the shape its expression gives. A letter of the expression is an input's
    /// dimension, an integer parameter of that name, or else bound by the first output that uses it.
    /// </summary>
    /// <param name="call">The call the result is for.</param>
    /// <param name="result">The path's result.</param>
    /// <param name="path">The path's name, for messages.</param>
    /// <returns>The outputs by name.</returns>
    /// <exception cref="InvalidOperationException">The path broke the declaration (a bug in the path).</exception>
    public IReadOnlyDictionary<string, NdArray> Emit(AlgorithmCall call, TResult result, string path)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(result);
        var dims = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var spec in Inputs)
        {
            if (!call.Has(spec.Name))
            {
                continue;
            }
            var shape = call.Array(spec.Name).Shape;
            var letters = Letters(spec.Shape);
            for (int d = 0; d < letters.Length && d < shape.Count; d++)
            {
                if (letters[d] != "_")
                {
                    dims[letters[d]] = shape[d];
                }
            }
        }
        foreach (var p in Parameters)
        {
            if (p.Spec.Kind == ParameterKind.Int && !dims.ContainsKey(p.Spec.Name) && call.Parameters.Has(p.Spec.Name))
            {
                dims[p.Spec.Name] = call.Parameters.GetInt(p.Spec.Name);
            }
        }
        var outputs = new Dictionary<string, NdArray>(StringComparer.Ordinal);
        foreach (var output in Outputs)
        {
            var spec = output.Spec;
            if (output.Get(result) is not { } array)
            {
                continue;
            }
            bool kindOk = spec.Kind switch
            {
                ArrayKind.Float => array.IsFloatingPoint,
                ArrayKind.Integer => array.DType is DType.I32 or DType.I64,
                _ => array.DType == DType.Bool,
            };
            if (!kindOk)
            {
                throw new InvalidOperationException(
                    $"{Name} path '{path}': output '{spec.Name}' has dtype {array.DType} but is declared {spec.Kind.ToString().ToLowerInvariant()}");
            }
            var letters = Letters(spec.Shape);
            bool shapeOk = letters.Length == array.Rank;
            for (int d = 0; shapeOk && d < letters.Length; d++)
            {
                if (letters[d] == "_")
                {
                    continue;
                }
                if (dims.TryGetValue(letters[d], out int size))
                {
                    shapeOk = size == array.Shape[d];
                }
                else
                {
                    dims[letters[d]] = array.Shape[d];
                }
            }
            if (!shapeOk)
            {
                string bound = string.Join(", ", letters.Select(l => dims.TryGetValue(l, out int s) ? $"{l}={s}" : l));
                throw new InvalidOperationException(
                    $"{Name} path '{path}': output '{spec.Name}' has shape {array.ShapeText} but is declared [{spec.Shape}] ({bound})");
            }
            outputs[spec.Name] = array;
        }
        return outputs;
    }

    private static string[] Letters(string shape) =>
        shape.Length == 0 ? [] : shape.Split(',').Select(l => l.Trim()).ToArray();
}
