using Reference.Harness.Registry;

namespace Reference.Cli;

/// <summary>
/// The command line after the verb: positional words, <c>--name value</c> options, repeated <c>--param name=value</c>
/// pairs and bare flags. Unknown options are errors (exit 2), so a typo never passes silently.
/// </summary>
internal sealed class Arguments
{
    private readonly Dictionary<string, string> options = new(StringComparer.Ordinal);
    private readonly HashSet<string> flags = new(StringComparer.Ordinal);

    public List<string> Positional { get; } = new();

    public List<KeyValuePair<string, string>> Parameters { get; } = new();

    /// <summary>Parses the words after the verb.</summary>
    /// <param name="words">The arguments.</param>
    /// <param name="valued">Options that take a value.</param>
    /// <param name="flagNames">Options that take none.</param>
    public static Arguments Parse(IReadOnlyList<string> words, IReadOnlyCollection<string> valued, IReadOnlyCollection<string> flagNames)
    {
        var result = new Arguments();
        for (int i = 0; i < words.Count; i++)
        {
            string w = words[i];
            if (!w.StartsWith("--", StringComparison.Ordinal))
            {
                result.Positional.Add(w);
                continue;
            }
            string name = w, value = "";
            int eq = w.IndexOf('=', StringComparison.Ordinal);
            bool inline = eq > 0 && w != "--param";
            if (inline && !w.StartsWith("--param=", StringComparison.Ordinal))
            {
                name = w[..eq];
                value = w[(eq + 1)..];
            }
            else if (w.StartsWith("--param=", StringComparison.Ordinal))
            {
                name = "--param";
                value = w["--param=".Length..];
            }
            if (flagNames.Contains(name))
            {
                result.flags.Add(name);
                continue;
            }
            if (name != "--param" && !valued.Contains(name))
            {
                throw new InputException($"unknown option '{name}'");
            }
            if (!inline && !w.StartsWith("--param=", StringComparison.Ordinal))
            {
                if (i + 1 >= words.Count)
                {
                    throw new InputException($"option '{name}' needs a value");
                }
                value = words[++i];
            }
            if (name == "--param")
            {
                int split = value.IndexOf('=', StringComparison.Ordinal);
                if (split <= 0)
                {
                    throw new InputException($"--param '{value}' is not of the form name=value");
                }
                string parameter = value[..split];
                if (result.Parameters.Any(x => x.Key == parameter))
                {
                    throw new InputException($"--param '{parameter}' is given twice");
                }
                result.Parameters.Add(new(parameter, value[(split + 1)..]));
            }
            else if (!result.options.TryAdd(name, value))
            {
                throw new InputException($"option '{name}' is given twice");
            }
        }
        return result;
    }

    public string? Option(string name) => options.GetValueOrDefault(name);

    public string Required(string name) => Option(name) ?? throw new InputException($"option '{name}' is required");

    public bool Flag(string name) => flags.Contains(name);

    public int IntOption(string name, int fallback)
    {
        var text = Option(name);
        if (text is null)
        {
            return fallback;
        }
        return int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new InputException($"option '{name}' = '{text}' is not an integer");
    }
}
