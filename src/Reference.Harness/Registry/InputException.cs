namespace Reference.Harness.Registry;

/// <summary>
/// Bad usage or bad input: a missing or malformed array, a wrong shape or dtype, an unknown or invalid parameter,
/// or a value the reference rejects. The CLI prints <see cref="Exception.Message"/> as its one-line reason and exits 2.
/// Messages name the file (when there is one), the array or parameter, and what is wrong.
/// </summary>
public sealed class InputException : Exception
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public InputException(string message) : base(message) { }

    /// <summary>Creates the exception with its one-line message and the error it translates.</summary>
    public InputException(string message, Exception inner) : base(message, inner) { }
}
