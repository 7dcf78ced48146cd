using System.Globalization;

namespace Reference.Harness.Registry;

/// <summary>
/// Parameter values for one call, checked against an algorithm's <see cref="ParameterSpec"/>s: unknown names and
/// values of the wrong type are rejected with an <see cref="InputException"/> that names the parameter.
/// </summary>
public sealed class ParameterValues
{
    private readonly Dictionary<string, string> values;
    private readonly Dictionary<string, ParameterSpec> specs;

    private ParameterValues(Dictionary<string, ParameterSpec> specs, Dictionary<string, string> values)
    {
        this.specs = specs;
        this.values = values;
    }

    /// <summary>Checks raw name=value pairs against the specs and fills in defaults.</summary>
    /// <param name="specs">The algorithm's parameters.</param>
    /// <param name="raw">The given values, as written on the command line.</param>
    /// <exception cref="InputException">An unknown name, or a value that does not parse as the parameter's type.</exception>
    public static ParameterValues Bind(IEnumerable<ParameterSpec> specs, IEnumerable<KeyValuePair<string, string>> raw)
    {
        ArgumentNullException.ThrowIfNull(specs);
        ArgumentNullException.ThrowIfNull(raw);
        var bySpec = specs.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in raw)
        {
            if (!bySpec.TryGetValue(name, out var spec))
            {
                throw new InputException(
                    $"parameter '{name}' is unknown; known: {string.Join(", ", bySpec.Keys)}");
            }
            Validate(spec, value.Trim());
            values[name] = value.Trim();
        }
        foreach (var spec in bySpec.Values)
        {
            if (!values.ContainsKey(spec.Name) && spec.Default is not null)
            {
                values[spec.Name] = spec.Default;
            }
        }
        return new ParameterValues(bySpec, values);
    }

    /// <summary>True when the parameter was given or has a default.</summary>
    public bool Has(string name) => values.ContainsKey(name);

    /// <summary>The values in effect, given and defaulted, as text.</summary>
    public IReadOnlyDictionary<string, string> AsText => values;

    /// <summary>An integer parameter.</summary>
    /// <exception cref="InputException">The parameter is required and absent.</exception>
    public int GetInt(string name) => int.Parse(Get(name), NumberStyles.Integer, CultureInfo.InvariantCulture);

    /// <summary>A double parameter.</summary>
    /// <exception cref="InputException">The parameter is required and absent.</exception>
    public double GetDouble(string name) => ParseDouble(Get(name));

    /// <summary>A boolean parameter.</summary>
    /// <exception cref="InputException">The parameter is required and absent.</exception>
    public bool GetBool(string name) => Get(name) == "true";

    /// <summary>A choice parameter's word.</summary>
    /// <exception cref="InputException">The parameter is required and absent.</exception>
    public string GetChoice(string name) => Get(name);

    /// <summary>An integer parameter, or null when absent.</summary>
    public int? TryGetInt(string name) => Has(name) ? GetInt(name) : null;

    /// <summary>A double parameter, or null when absent.</summary>
    public double? TryGetDouble(string name) => Has(name) ? GetDouble(name) : null;

    private string Get(string name)
    {
        if (!specs.ContainsKey(name))
        {
            throw new InvalidOperationException($"the algorithm declares no parameter '{name}'");
        }
        return values.TryGetValue(name, out var v) ? v : throw new InputException($"parameter '{name}' is required (--param {name}=...)");
    }

    private static double ParseDouble(string text) =>
        double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);

    private static void Validate(ParameterSpec spec, string value)
    {
        bool ok = spec.Kind switch
        {
            ParameterKind.Int => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _),
            ParameterKind.Double => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d),
            ParameterKind.Bool => value is "true" or "false",
            ParameterKind.Choice => spec.Choices?.Contains(value) ?? false,
            _ => false,
        };
        if (!ok)
        {
            string expected = spec.Kind switch
            {
                ParameterKind.Int => "an integer",
                ParameterKind.Double => "a finite number",
                ParameterKind.Bool => "true or false",
                _ => "one of " + string.Join(", ", spec.Choices ?? Array.Empty<string>()),
            };
            throw new InputException($"parameter '{spec.Name}' = '{value}' is not {expected}");
        }
    }
}
