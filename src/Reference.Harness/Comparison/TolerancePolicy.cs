using System.Globalization;
using System.Text.RegularExpressions;
using Reference.Numerics;

namespace Reference.Harness.Comparison;

/// <summary>
/// A named rule that decides whether a candidate output array equals the expected one (proofs/tolerance.md,
/// Definition: Policies). Each policy is defined once, with the reason for its rule in a comment, and is referred to by its
/// <see cref="Name"/>, which <see cref="Parse(string)"/> reads back.
/// </summary>
/// <remarks>
/// NaN/Inf rules shared by every policy: NaN against NaN matches (both sides agree the value is undefined);
/// an infinity matches the same infinity; NaN on one side only is a NaN mismatch; an infinity on one side only,
/// or infinities of opposite signs, is an Inf mismatch. Both kinds count in <see cref="ComparisonReport.MismatchCount"/>
/// and fail the comparison.
/// </remarks>
public abstract class TolerancePolicy
{
    /// <summary>For subclasses.</summary>
    protected TolerancePolicy()
    {
    }

    /// <summary>The policy's name with its parameters, e.g. <c>exact</c>, <c>allclose(atol=1e-05, rtol=1.3e-06)</c>,
    /// <c>relative-rms(0.01)</c>, <c>baseline(bf16, factor=2)</c>. <see cref="Parse(string)"/> reads it back.</summary>
    public abstract string Name { get; }

    /// <summary>
    /// Compares a candidate output with the expected one, element by element in C order.
    /// </summary>
    /// <param name="arrayName">The output's name, for the report and for error messages.</param>
    /// <param name="candidate">The candidate's values, flat in C order, length = product of <paramref name="shape"/>.</param>
    /// <param name="expected">The reference's values, same length and order.</param>
    /// <param name="shape">The array's shape, outermost first (empty for a scalar); used to write indices.</param>
    /// <returns>The report: verdict, counts, largest errors, first mismatches.</returns>
    /// <exception cref="ArgumentException">The lengths differ from each other or from the shape's product
    /// (the message names <paramref name="arrayName"/>).</exception>
    public abstract ComparisonReport Compare(
        string arrayName, ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected, IReadOnlyList<int> shape);

    /// <inheritdoc />
    public override string ToString() => Name;

    /// <summary>
    /// Reads a policy name, with <see cref="NumberFormat.Float32"/> (the optimized kernels' precision) as the format
    /// for the forms that need one and do not name it. See <see cref="Parse(string, NumberFormat)"/>.
    /// </summary>
    /// <param name="name">The policy name.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">The name is not one of the forms listed at
    /// <see cref="Parse(string, NumberFormat)"/>.</exception>
    public static TolerancePolicy Parse(string name) => Parse(name, NumberFormat.Float32);

    /// <summary>
    /// Reads a policy name. The forms (spaces allowed around every part, names case-insensitive):
    /// <list type="bullet">
    /// <item><c>exact</c></item>
    /// <item><c>allclose</c>, <c>allclose(bf16)</c>: the preset <see cref="AllClosePolicy.For"/> of the named format,
    /// or of <paramref name="defaultFormat"/>; <c>allclose(atol=1e-6, rtol=1e-5)</c>: explicit tolerances
    /// (one left out is taken from the preset).</item>
    /// <item><c>relative-rms(0.01)</c> or <c>relative-rms(bound=0.01)</c></item>
    /// <item><c>baseline</c>, <c>baseline(bf16)</c>, <c>baseline(f16, factor=3)</c>: the format defaults to
    /// <paramref name="defaultFormat"/>, the factor to 2.</item>
    /// </list>
    /// Format names: <c>f64</c>, <c>f32</c>, <c>f16</c>, <c>bf16</c> (also <c>float64</c>, <c>fp32</c>,
    /// <c>half</c>, <c>bfloat16</c>, ...).
    /// </summary>
    /// <param name="name">The policy name.</param>
    /// <param name="defaultFormat">The candidate's format, for <c>allclose</c> and <c>baseline</c> without one.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">The name is not one of these forms, or a parameter is out of range.</exception>
    public static TolerancePolicy Parse(string name, NumberFormat defaultFormat)
    {
        ArgumentNullException.ThrowIfNull(name);
        var match = Regex.Match(name, @"^\s*([A-Za-z][A-Za-z0-9-]*)\s*(?:\((.*)\))?\s*$");
        if (!match.Success)
        {
            throw Bad(name, "expected a policy name such as exact, allclose(atol=1e-6, rtol=1e-5), relative-rms(0.01), baseline(bf16)");
        }
        string kind = match.Groups[1].Value.ToLowerInvariant();
        var arguments = ParseArguments(name, match.Groups[2].Success ? match.Groups[2].Value : "");
        try
        {
            switch (kind)
            {
                case "exact":
                    Expect(name, arguments, positional: 0);
                    return new ExactPolicy();

                case "allclose":
                    {
                        Expect(name, arguments, positional: 1, "atol", "rtol");
                        var format = arguments.Positional.Count == 1 ? FormatNames.Parse(name, arguments.Positional[0]) : defaultFormat;
                        var preset = AllClosePolicy.For(format);
                        return new AllClosePolicy(
                            arguments.Number(name, "atol") ?? preset.Atol,
                            arguments.Number(name, "rtol") ?? preset.Rtol);
                    }

                case "relative-rms":
                    {
                        Expect(name, arguments, positional: 1, "bound");
                        double? bound = arguments.Positional.Count == 1
                            ? Number(name, "bound", arguments.Positional[0])
                            : arguments.Number(name, "bound");
                        if (bound is null || (arguments.Positional.Count == 1 && arguments.Named.ContainsKey("bound")))
                        {
                            throw Bad(name, "relative-rms takes exactly one bound, e.g. relative-rms(0.01)");
                        }
                        return new RelativeRmsPolicy(bound.Value);
                    }

                case "baseline":
                    {
                        Expect(name, arguments, positional: 1, "format", "factor");
                        if (arguments.Positional.Count == 1 && arguments.Named.ContainsKey("format"))
                        {
                            throw Bad(name, "the format is given twice");
                        }
                        string? formatText = arguments.Positional.Count == 1 ? arguments.Positional[0]
                            : arguments.Named.GetValueOrDefault("format");
                        var format = formatText is null ? defaultFormat : FormatNames.Parse(name, formatText);
                        return new BaselinePolicy(format, arguments.Number(name, "factor") ?? BaselinePolicy.DefaultFactor);
                    }

                default:
                    throw Bad(name, $"unknown policy '{kind}' (known: exact, allclose, relative-rms, baseline)");
            }
        }
        catch (ArgumentOutOfRangeException e)
        {
            // A parameter the policy's constructor rejects (negative tolerance, ...): report it against the name.
            throw Bad(name, e.Message);
        }
    }

    private sealed record Arguments(List<string> Positional, Dictionary<string, string> Named)
    {
        public double? Number(string name, string key) =>
            Named.TryGetValue(key, out var text) ? TolerancePolicy.Number(name, key, text) : null;
    }

    private static Arguments ParseArguments(string name, string text)
    {
        var positional = new List<string>();
        var named = new Dictionary<string, string>(StringComparer.Ordinal);
        if (text.Trim().Length == 0)
        {
            return new Arguments(positional, named);
        }
        foreach (string part in text.Split(','))
        {
            string item = part.Trim();
            int eq = item.IndexOf('=');
            if (item.Length == 0)
            {
                throw Bad(name, "an empty parameter");
            }
            if (eq < 0)
            {
                if (named.Count > 0)
                {
                    throw Bad(name, $"the unnamed parameter '{item}' must come before the named ones");
                }
                positional.Add(item);
                continue;
            }
            string key = item[..eq].Trim().ToLowerInvariant();
            string value = item[(eq + 1)..].Trim();
            if (!named.TryAdd(key, value))
            {
                throw Bad(name, $"the parameter '{key}' is given twice");
            }
        }
        return new Arguments(positional, named);
    }

    private static void Expect(string name, Arguments arguments, int positional, params string[] keys)
    {
        if (arguments.Positional.Count > positional)
        {
            throw Bad(name, $"too many unnamed parameters (at most {positional})");
        }
        foreach (string key in arguments.Named.Keys)
        {
            if (Array.IndexOf(keys, key) < 0)
            {
                throw Bad(name, keys.Length == 0
                    ? $"unknown parameter '{key}' (this policy takes none)"
                    : $"unknown parameter '{key}' (known: {string.Join(", ", keys)})");
            }
        }
    }

    private static double Number(string name, string key, string text)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
        {
            throw Bad(name, $"{key} = '{text}' is not a number");
        }
        return value;
    }

    private static ArgumentException Bad(string name, string problem) =>
        new($"tolerance policy '{name}': {problem}", nameof(name));
}

/// <summary>The short names of the number formats used in policy names (the dtype names of the CLI contract).</summary>
internal static class FormatNames
{
    internal static string Short(NumberFormat format) => format switch
    {
        NumberFormat.Float64 => "f64",
        NumberFormat.Float32 => "f32",
        NumberFormat.Float16 => "f16",
        NumberFormat.BFloat16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown number format"),
    };

    internal static NumberFormat Parse(string policyName, string text) => text.Trim().ToLowerInvariant() switch
    {
        "f64" or "float64" or "fp64" or "double" => NumberFormat.Float64,
        "f32" or "float32" or "fp32" or "float" or "single" => NumberFormat.Float32,
        "f16" or "float16" or "fp16" or "half" => NumberFormat.Float16,
        "bf16" or "bfloat16" => NumberFormat.BFloat16,
        _ => throw new ArgumentException(
            $"tolerance policy '{policyName}': unknown number format '{text}' (known: f64, f32, f16, bf16)", "name"),
    };
}
