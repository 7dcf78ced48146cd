namespace Reference.Harness.Registry;

/// <summary>
/// One parameter declared against an algorithm's options record: its <see cref="ParameterSpec"/> (name, kind, default,
/// documentation, the words of a choice) and how its value sets the record. <see cref="AlgorithmEntry{TOptions, TResult}"/>
/// builds its options from these, so a parameter is written in one place. Create them with <see cref="Param{TOptions}"/>.
/// </summary>
/// <typeparam name="TOptions">The options record.</typeparam>
public sealed class Parameter<TOptions>
{
    private readonly Func<TOptions, ParameterValues, TOptions> apply;

    internal Parameter(ParameterSpec spec, Func<TOptions, ParameterValues, TOptions> apply)
    {
        Spec = spec;
        this.apply = apply;
    }

    /// <summary>What <c>reference list</c> prints and the command line accepts.</summary>
    public ParameterSpec Spec { get; }

    /// <summary>The options with this parameter's value set.</summary>
    /// <param name="options">The options so far.</param>
    /// <param name="values">The call's checked parameter values.</param>
    /// <returns>The new options.</returns>
    /// <exception cref="InputException">The parameter is required and absent.</exception>
    public TOptions Apply(TOptions options, ParameterValues values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return apply(options, values);
    }
}

/// <summary>Declares the parameters of an algorithm whose options are <typeparamref name="TOptions"/>.</summary>
/// <typeparam name="TOptions">The options record.</typeparam>
public static class Param<TOptions>
{
    /// <summary>An integer parameter with a default (or required, when <paramref name="defaultValue"/> is null).</summary>
    /// <param name="name">The name.</param>
    /// <param name="defaultValue">The default as on the command line; null when required.</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="set">Sets the value on the options.</param>
    public static Parameter<TOptions> Int(string name, string? defaultValue, string doc, Func<TOptions, int, TOptions> set) =>
        new(new ParameterSpec(name, ParameterKind.Int, defaultValue, doc), (o, p) => set(o, p.GetInt(name)));

    /// <summary>An integer parameter that may be absent (null: a derived default, which <paramref name="doc"/> describes).</summary>
    /// <param name="name">The name.</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="set">Sets the value, or null when absent, on the options.</param>
    public static Parameter<TOptions> OptionalInt(string name, string doc, Func<TOptions, int?, TOptions> set) =>
        new(new ParameterSpec(name, ParameterKind.Int, null, doc), (o, p) => set(o, p.TryGetInt(name)));

    /// <summary>A number parameter with a default (or required, when <paramref name="defaultValue"/> is null).</summary>
    /// <param name="name">The name.</param>
    /// <param name="defaultValue">The default as on the command line; null when required.</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="set">Sets the value on the options.</param>
    public static Parameter<TOptions> Double(string name, string? defaultValue, string doc, Func<TOptions, double, TOptions> set) =>
        new(new ParameterSpec(name, ParameterKind.Double, defaultValue, doc), (o, p) => set(o, p.GetDouble(name)));

    /// <summary>A number parameter that may be absent (null: a derived default, which <paramref name="doc"/> describes).</summary>
    /// <param name="name">The name.</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="set">Sets the value, or null when absent, on the options.</param>
    public static Parameter<TOptions> OptionalDouble(string name, string doc, Func<TOptions, double?, TOptions> set) =>
        new(new ParameterSpec(name, ParameterKind.Double, null, doc), (o, p) => set(o, p.TryGetDouble(name)));

    /// <summary>A true/false parameter.</summary>
    /// <param name="name">The name.</param>
    /// <param name="defaultValue">The default, "true" or "false".</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="set">Sets the value on the options.</param>
    public static Parameter<TOptions> Bool(string name, string defaultValue, string doc, Func<TOptions, bool, TOptions> set) =>
        new(new ParameterSpec(name, ParameterKind.Bool, defaultValue, doc), (o, p) => set(o, p.GetBool(name)));

    /// <summary>A choice among words, each standing for a value.</summary>
    /// <typeparam name="TValue">What a word stands for (an enum of the reference).</typeparam>
    /// <param name="name">The name.</param>
    /// <param name="defaultValue">The default word.</param>
    /// <param name="doc">One line for <c>reference list</c>.</param>
    /// <param name="choices">The words, in the order <c>reference list</c> prints them, and their values.</param>
    /// <param name="set">Sets the value on the options.</param>
    public static Parameter<TOptions> Choice<TValue>(
        string name, string defaultValue, string doc, IReadOnlyList<(string Word, TValue Value)> choices, Func<TOptions, TValue, TOptions> set)
    {
        ArgumentNullException.ThrowIfNull(choices);
        var byWord = choices.ToDictionary(c => c.Word, c => c.Value, StringComparer.Ordinal);
        return new(new ParameterSpec(name, ParameterKind.Choice, defaultValue, doc, choices.Select(c => c.Word).ToArray()),
            (o, p) => set(o, byWord[p.GetChoice(name)]));
    }
}
