namespace Reference.Harness.Tensors;

/// <summary>
/// A tensor file (.npy, .npz, .safetensors) that cannot be read or written: missing, malformed, or holding
/// something this harness does not support. The message is one line that names the file, the array when the
/// problem belongs to one, and what is wrong, e.g.
/// <c>in.npz: array 'logits': shape (3, 4) needs 48 bytes but 40 remain</c>. The CLI prints it as the reason
/// for exit code 2.
/// </summary>
public sealed class TensorFileException : Exception
{
    /// <summary>Creates the exception; the message is composed from the parts.</summary>
    /// <param name="filePath">The file (or stream description) the problem was found in.</param>
    /// <param name="arrayName">The array the problem belongs to, or null for a file-level problem.</param>
    /// <param name="problem">What is wrong, as a short clause without the file or array name.</param>
    /// <param name="innerException">The lower-level exception that revealed the problem, if any.</param>
    public TensorFileException(string filePath, string? arrayName, string problem, Exception? innerException = null)
        : base(Compose(filePath, arrayName, problem), innerException)
    {
        FilePath = filePath;
        ArrayName = arrayName;
        Problem = OneLine(problem);
    }

    /// <summary>The file (or stream description) the problem was found in.</summary>
    public string FilePath { get; }

    /// <summary>The array the problem belongs to; null when the problem is with the file as a whole.</summary>
    public string? ArrayName { get; }

    /// <summary>What is wrong, without the file and array prefix.</summary>
    public string Problem { get; }

    private static string Compose(string filePath, string? arrayName, string problem) =>
        arrayName is null
            ? $"{OneLine(filePath)}: {OneLine(problem)}"
            : $"{OneLine(filePath)}: array '{OneLine(arrayName)}': {OneLine(problem)}";

    // The CLI prints the message as a single line, so control characters from file contents must not break it.
    private static string OneLine(string text)
    {
        var chars = text.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
        {
            if (char.IsControl(chars[i]))
            {
                chars[i] = ' ';
            }
        }
        return new string(chars);
    }
}
