using System.Text;

namespace Reference.Harness.Tensors;

/// <summary>A Python tuple literal, e.g. <c>(3, 4)</c> or <c>()</c>.</summary>
internal sealed record PyTuple(IReadOnlyList<object?> Items);

/// <summary>A Python list literal, e.g. <c>[('a', '&lt;f4')]</c>.</summary>
internal sealed record PyList(IReadOnlyList<object?> Items);

/// <summary>A Python dict literal, keys and values in source order.</summary>
internal sealed record PyDict(IReadOnlyList<KeyValuePair<object?, object?>> Items);

/// <summary>A malformed Python literal, with the character position where parsing stopped.</summary>
internal sealed class PyLiteralException(string message, int position) : Exception(message)
{
    /// <summary>The zero-based character position of the problem.</summary>
    public int Position { get; } = position;
}

/// <summary>
/// A parser for the small subset of Python literals that .npy headers use (the header is the <c>repr</c> of a
/// dict, read by numpy with <c>ast.literal_eval</c>): strings in single or double quotes, integers (optionally
/// signed, with Python 2's <c>L</c> suffix), <c>True</c>, <c>False</c>, <c>None</c>, tuples, lists and dicts,
/// with trailing commas. Values come back as string, long, bool, null, <see cref="PyTuple"/>, <see cref="PyList"/>
/// and <see cref="PyDict"/>. Nesting is limited so a hostile header cannot exhaust the stack.
/// </summary>
internal sealed class PyLiteral
{
    private const int MaxDepth = 32;
    private readonly string text;
    private int pos;

    private PyLiteral(string text) => this.text = text;

    /// <summary>Parses one literal that spans the whole text (surrounding whitespace allowed).</summary>
    /// <exception cref="PyLiteralException">The text is not such a literal.</exception>
    public static object? Parse(string text)
    {
        var parser = new PyLiteral(text);
        parser.SkipSpace();
        var value = parser.Value(0);
        parser.SkipSpace();
        if (parser.pos != text.Length)
        {
            throw parser.Error($"unexpected {parser.Describe()} after the end of the literal");
        }
        return value;
    }

    private object? Value(int depth)
    {
        if (depth > MaxDepth)
        {
            throw Error($"nesting deeper than {MaxDepth} levels");
        }
        if (pos >= text.Length)
        {
            throw Error("unexpected end of text, expected a value");
        }
        char c = text[pos];
        switch (c)
        {
            case '{': return Dict(depth);
            case '(': return Sequence(depth, ')', items => new PyTuple(items), isTuple: true);
            case '[': return Sequence(depth, ']', items => new PyList(items), isTuple: false);
            case '\'' or '"': return String();
        }
        if (c is '-' or '+' || char.IsAsciiDigit(c))
        {
            return Integer();
        }
        if (char.IsAsciiLetter(c) || c == '_')
        {
            int start = pos;
            while (pos < text.Length && (char.IsAsciiLetterOrDigit(text[pos]) || text[pos] == '_'))
            {
                pos++;
            }
            string word = text[start..pos];
            // A string prefix (u'...', b'...') directly followed by a quote.
            if (word is "u" or "b" && pos < text.Length && text[pos] is '\'' or '"')
            {
                return String();
            }
            switch (word)
            {
                case "True": return true;
                case "False": return false;
                case "None": return null;
            }
            pos = start;
            throw Error($"unexpected name '{word}' (only True, False and None are allowed)");
        }
        throw Error($"unexpected {Describe()}, expected a value");
    }

    private PyDict Dict(int depth)
    {
        pos++; // '{'
        var items = new List<KeyValuePair<object?, object?>>();
        while (true)
        {
            SkipSpace();
            if (Peek('}'))
            {
                pos++;
                return new PyDict(items);
            }
            var key = Value(depth + 1);
            SkipSpace();
            Expect(':');
            SkipSpace();
            var value = Value(depth + 1);
            items.Add(new(key, value));
            SkipSpace();
            if (Peek(','))
            {
                pos++;
            }
            else if (!Peek('}'))
            {
                throw Error($"unexpected {Describe()} in a dict, expected ',' or '}}'");
            }
        }
    }

    private object Sequence(int depth, char close, Func<IReadOnlyList<object?>, object> make, bool isTuple)
    {
        pos++; // '(' or '['
        var items = new List<object?>();
        bool sawComma = false;
        while (true)
        {
            SkipSpace();
            if (Peek(close))
            {
                pos++;
                break;
            }
            items.Add(Value(depth + 1));
            SkipSpace();
            if (Peek(','))
            {
                pos++;
                sawComma = true;
            }
            else if (!Peek(close))
            {
                throw Error($"unexpected {Describe()}, expected ',' or '{close}'");
            }
        }
        // In Python "(3)" is the integer 3, not a tuple; only "(3,)" is a one-element tuple.
        if (isTuple && items.Count == 1 && !sawComma)
        {
            return items[0] ?? throw Error("'(None)' is not a tuple");
        }
        return make(items);
    }

    private string String()
    {
        if (text[pos] is 'u' or 'b')
        {
            pos++;
        }
        char quote = text[pos++];
        var sb = new StringBuilder();
        while (true)
        {
            if (pos >= text.Length || text[pos] == '\n')
            {
                throw Error("unterminated string");
            }
            char c = text[pos++];
            if (c == quote)
            {
                return sb.ToString();
            }
            if (c == '\\')
            {
                if (pos >= text.Length)
                {
                    throw Error("unterminated string");
                }
                char e = text[pos++];
                sb.Append(e switch
                {
                    'n' => "\n",
                    't' => "\t",
                    'r' => "\r",
                    '0' => "\0",
                    '\\' or '\'' or '"' => e.ToString(),
                    _ => "\\" + e, // Python keeps unknown escapes verbatim.
                });
            }
            else
            {
                sb.Append(c);
            }
        }
    }

    private long Integer()
    {
        int start = pos;
        bool negative = false;
        if (text[pos] is '-' or '+')
        {
            negative = text[pos] == '-';
            pos++;
        }
        if (pos >= text.Length || !char.IsAsciiDigit(text[pos]))
        {
            throw Error("a sign must be followed by digits");
        }
        long value = 0;
        while (pos < text.Length && char.IsAsciiDigit(text[pos]))
        {
            int digit = text[pos] - '0';
            if (value > (long.MaxValue - digit) / 10)
            {
                throw new PyLiteralException($"integer {Token(start)} is too large", start);
            }
            value = value * 10 + digit;
            pos++;
        }
        if (pos < text.Length && text[pos] is 'L' or 'l')
        {
            pos++; // Python 2 long suffix, as old numpy versions wrote shapes.
        }
        if (pos < text.Length && (char.IsAsciiLetterOrDigit(text[pos]) || text[pos] is '.' or '_'))
        {
            throw new PyLiteralException($"'{Token(start)}' is not an integer", start);
        }
        return negative ? -value : value;
    }

    // The run of number-like characters starting at start, for messages.
    private string Token(int start)
    {
        int end = start + 1;
        while (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] is '.' or '_'))
        {
            end++;
        }
        var token = text[start..end];
        return token.Length > 40 ? token[..40] + "..." : token;
    }

    private void SkipSpace()
    {
        while (pos < text.Length && text[pos] is ' ' or '\t' or '\n' or '\r')
        {
            pos++;
        }
    }

    private bool Peek(char c) => pos < text.Length && text[pos] == c;

    private void Expect(char c)
    {
        if (!Peek(c))
        {
            throw Error($"unexpected {Describe()}, expected '{c}'");
        }
        pos++;
    }

    private string Describe() => pos >= text.Length ? "end of text" : $"'{text[pos]}'";

    private PyLiteralException Error(string message) => new(message, pos);
}
