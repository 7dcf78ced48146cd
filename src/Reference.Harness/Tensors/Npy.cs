using System.Buffers.Binary;
using System.Text;

namespace Reference.Harness.Tensors;

/// <summary>
/// Reads and writes numpy's <c>.npy</c> format (numpy NEP 1, "A simple file format for NumPy arrays";
/// <c>numpy.lib.format</c>). Layout: the magic <c>\x93NUMPY</c>, a major and a minor version byte, the header
/// length (u16 little-endian in version 1.0, u32 in 2.0 and 3.0), the header (the <c>repr</c> of a Python dict
/// <c>{'descr': ..., 'fortran_order': ..., 'shape': ...}</c>, latin-1 in 1.0/2.0, UTF-8 in 3.0, padded with
/// spaces and ending in a newline), then the raw elements.
/// <para>
/// Supported: versions 1.0, 2.0, 3.0; dtypes <c>f2 f4 f8 i4 i8 u1 b1</c> (also <c>?</c> for bool); byte orders
/// <c>&lt;</c>, <c>|</c>, <c>=</c> (native, which is little-endian on every host this runs on) and <c>&gt;</c>
/// (big-endian: each element's bytes are reversed on reading); C order and Fortran order
/// (<c>'fortran_order': True</c>, as <c>np.save</c> writes a transposed array: the elements are permuted into
/// C order on reading). The returned array is always C-ordered and native-endian.
/// Everything else is rejected with a <see cref="TensorFileException"/> that says what is wrong.
/// </para>
/// <para>
/// Safety: every size in the file is checked against the bytes that remain before anything of that size is
/// allocated, and the product of the dimensions is computed without silent overflow, so a small file that
/// claims a huge shape is rejected without allocating it. One array may hold at most
/// <see cref="Array.MaxLength"/> bytes; headers longer than <see cref="MaxHeaderLength"/> are rejected.
/// </para>
/// </summary>
public static class Npy
{
    /// <summary>The longest header this reader accepts (numpy's own headers are at most a few hundred bytes).</summary>
    public const int MaxHeaderLength = 1 << 20;

    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Reads one .npy array from a stream, from its current position to its end.</summary>
    /// <param name="stream">The stream. If it can seek, the bytes from its position to its length are the file;
    /// otherwise it is read until it ends.</param>
    /// <param name="sourceName">The file name to put in error messages.</param>
    /// <param name="arrayName">The array name to put in error messages (e.g. the entry of an .npz), or null.</param>
    /// <returns>The array, with the file's dtype and shape; elements copied bit for bit.</returns>
    /// <exception cref="TensorFileException">The bytes are not a supported, well-formed .npy file.</exception>
    public static NdArray Read(Stream stream, string sourceName, string? arrayName = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(sourceName);
        long? available = stream.CanSeek ? stream.Length - stream.Position : null;
        return ReadCore(stream, available, sourceName, arrayName);
    }

    /// <summary>Reads one .npy array from the whole of a byte array.</summary>
    /// <param name="bytes">The file's bytes.</param>
    /// <param name="sourceName">The file name to put in error messages.</param>
    /// <param name="arrayName">The array name to put in error messages, or null.</param>
    /// <returns>The array.</returns>
    /// <exception cref="TensorFileException">The bytes are not a supported, well-formed .npy file.</exception>
    public static NdArray Read(byte[] bytes, string sourceName, string? arrayName = null)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        return Read(new MemoryStream(bytes, writable: false), sourceName, arrayName);
    }

    /// <summary>Reads one .npy array from the whole of a span (the span is copied once).</summary>
    /// <param name="bytes">The file's bytes.</param>
    /// <param name="sourceName">The file name to put in error messages.</param>
    /// <param name="arrayName">The array name to put in error messages, or null.</param>
    /// <returns>The array.</returns>
    /// <exception cref="TensorFileException">The bytes are not a supported, well-formed .npy file.</exception>
    public static NdArray Read(ReadOnlySpan<byte> bytes, string sourceName, string? arrayName = null) =>
        Read(bytes.ToArray(), sourceName, arrayName);

    /// <summary>
    /// The reader. <paramref name="available"/> is the number of bytes the source declares from here to its end
    /// (a seekable stream's remaining length, a zip entry's uncompressed size), or null when unknown. Declared
    /// sizes are compared before allocating; actual bytes are then read with a buffer that grows only as they
    /// arrive, and the end of the stream is checked, so a false declaration is caught either way.
    /// </summary>
    internal static NdArray ReadCore(Stream stream, long? available, string source, string? name)
    {
        TensorFileException Fail(string problem, Exception? inner = null) => new(source, name, problem, inner);

        // 1. Magic string and version: 8 bytes.
        var preamble = TensorBytes.ReadBounded(stream, 8);
        int magicSeen = Math.Min(preamble.Length, Magic.Length);
        if (!preamble.AsSpan(0, magicSeen).SequenceEqual(Magic.AsSpan(0, magicSeen)))
        {
            throw Fail($"not an npy file: bad magic {Hex(preamble.AsSpan(0, magicSeen))}, expected {Hex(Magic)} (\\x93NUMPY)");
        }
        if (preamble.Length < 8)
        {
            throw Fail($"truncated file: {preamble.Length} bytes, too short for the npy magic string and version");
        }
        int major = preamble[6], minor = preamble[7];
        if (minor != 0 || major is < 1 or > 3)
        {
            throw Fail($"unsupported npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)");
        }

        // 2. Header length: u16 in version 1.0, u32 in 2.0 and 3.0.
        int lengthSize = major == 1 ? 2 : 4;
        var lengthBytes = TensorBytes.ReadBounded(stream, lengthSize);
        if (lengthBytes.Length < lengthSize)
        {
            throw Fail($"truncated file: {8 + lengthBytes.Length} bytes, too short for the version {major}.0 header length field");
        }
        long headerLength = lengthSize == 2
            ? BinaryPrimitives.ReadUInt16LittleEndian(lengthBytes)
            : BinaryPrimitives.ReadUInt32LittleEndian(lengthBytes);
        long headerStart = 8 + lengthSize;
        if (available is long total && headerLength > total - headerStart)
        {
            throw Fail($"truncated header: the header length is {headerLength} bytes but only {Math.Max(0, total - headerStart)} remain");
        }
        if (headerLength > MaxHeaderLength)
        {
            throw Fail($"header length {headerLength} exceeds this reader's limit of {MaxHeaderLength} bytes");
        }

        // 3. The header text: latin-1 in versions 1.0 and 2.0, UTF-8 in 3.0.
        var headerBytes = TensorBytes.ReadBounded(stream, headerLength);
        if (headerBytes.Length < headerLength)
        {
            throw Fail($"truncated header: the header length is {headerLength} bytes but only {headerBytes.Length} remain");
        }
        string headerText;
        try
        {
            headerText = major == 3
                ? new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(headerBytes)
                : Encoding.Latin1.GetString(headerBytes);
        }
        catch (DecoderFallbackException e)
        {
            throw Fail("the version 3.0 header is not valid UTF-8", e);
        }
        var (dtype, dims, bigEndian, fortran) = ParseHeader(headerText, Fail);

        // 4. Sizes: checked against what the source declares before any allocation.
        string shapeText = TensorBytes.ShapeText(dims);
        int elementSize = NdArray.ElementSize(dtype);
        long dataBytes = TensorBytes.ByteCount(dims, elementSize)
            ?? throw Fail($"shape {shapeText} has more elements than 64-bit sizes can count");
        long dataStart = headerStart + headerLength;
        if (available is long declared && dataBytes != declared - dataStart)
        {
            throw Fail($"shape {shapeText} needs {dataBytes} bytes but {declared - dataStart} remain");
        }
        if (dataBytes > TensorBytes.MaxArrayBytes)
        {
            throw Fail($"shape {shapeText} needs {dataBytes} bytes, more than this reader's limit of {TensorBytes.MaxArrayBytes} bytes per array");
        }

        // 5. The elements, then the end of the stream.
        var data = TensorBytes.ReadBounded(stream, dataBytes);
        if (data.Length < dataBytes)
        {
            throw Fail($"shape {shapeText} needs {dataBytes} bytes but {data.Length} remain");
        }
        long extra = TensorBytes.CountRemaining(stream, cap: 1 << 20);
        if (extra > 0)
        {
            string more = extra >= 1 << 20 ? $"more than {dataBytes + extra}" : (dataBytes + extra).ToString();
            throw Fail($"shape {shapeText} needs {dataBytes} bytes but {more} remain");
        }

        // 6. Native byte order, then C order (both in place or into one new buffer of the same size).
        if (bigEndian)
        {
            TensorBytes.ReverseElementBytes(data, elementSize);
        }
        if (fortran)
        {
            data = TensorBytes.FortranToC(data, ToIntDims(dims), elementSize);
        }

        // 7. Booleans must be stored as 0 or 1 (checked in C order, so the index reported is numpy's a[i, j, ...]).
        if (dtype == DType.Bool)
        {
            long bad = TensorBytes.FirstInvalidBool(data);
            if (bad >= 0)
            {
                throw Fail($"bool element at {NdArray.IndexText(ToIntDims(dims), bad)} is the byte 0x{data[bad]:X2}; only 0 and 1 are valid");
            }
        }
        return TensorBytes.FromLittleEndian(dtype, ToIntDims(dims), data);
    }

    /// <summary>Writes one array as .npy: version 1.0, or 2.0 when the header does not fit a u16 length.</summary>
    /// <param name="stream">The stream to write to, at its current position.</param>
    /// <param name="array">The array; any dtype but bf16, which numpy has no type for.</param>
    /// <exception cref="ArgumentException">The array is bf16.</exception>
    public static void Write(Stream stream, NdArray array)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(array);
        string descr = TensorBytes.NumpyDescr(array.DType)
            ?? throw new ArgumentException("bf16 has no numpy dtype; store it in .safetensors instead", nameof(array));

        // 1. The dict, as numpy writes it: keys sorted, each followed by ", ".
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {array.ShapeText}, }}";

        // 2. Pad with spaces and end with '\n' so that the data starts at a multiple of 64 bytes.
        int major = 1;
        int preambleLength = 10;
        int padded = Align(preambleLength + dict.Length + 1, 64) - preambleLength;
        if (padded > ushort.MaxValue)
        {
            major = 2;
            preambleLength = 12;
            padded = Align(preambleLength + dict.Length + 1, 64) - preambleLength;
        }
        string header = dict.PadRight(padded - 1) + "\n";

        // 3. Magic, version, header length, header, data.
        stream.Write(Magic);
        stream.WriteByte((byte)major);
        stream.WriteByte(0);
        Span<byte> length = stackalloc byte[4];
        if (major == 1)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)header.Length);
            stream.Write(length[..2]);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)header.Length);
            stream.Write(length);
        }
        stream.Write(Encoding.Latin1.GetBytes(header));
        TensorBytes.WriteLittleEndian(stream, array);
    }

    /// <summary>Writes one array as a .npy byte array.</summary>
    /// <param name="array">The array; any dtype but bf16.</param>
    /// <returns>The file's bytes.</returns>
    /// <exception cref="ArgumentException">The array is bf16.</exception>
    public static byte[] ToBytes(NdArray array)
    {
        var stream = new MemoryStream();
        Write(stream, array);
        return stream.ToArray();
    }

    private static int Align(int n, int alignment) => (n + alignment - 1) / alignment * alignment;

    // Parses the header dict into a dtype, a shape (dimensions non-negative and within int range), whether the
    // elements are big-endian (multi-byte dtypes only) and whether they are in Fortran order (rank >= 2 only:
    // for rank 0 and 1 the two orders coincide).
    private static (DType dtype, long[] dims, bool bigEndian, bool fortran) ParseHeader(string text, Func<string, Exception?, TensorFileException> fail)
    {
        object? parsed;
        try
        {
            parsed = PyLiteral.Parse(text);
        }
        catch (PyLiteralException e)
        {
            throw fail($"malformed header dict: {e.Message} at character {e.Position} of {Snippet(text)}", e);
        }
        if (parsed is not PyDict dict)
        {
            throw fail($"malformed header: expected a dict, found {Snippet(text)}", null);
        }

        object? descr = null, fortran = null, shape = null;
        var seen = new HashSet<string>();
        foreach (var (key, value) in dict.Items)
        {
            if (key is not string k)
            {
                throw fail($"malformed header dict: key {PyRepr(key)} is not a string", null);
            }
            if (!seen.Add(k))
            {
                throw fail($"malformed header dict: key '{k}' appears twice", null);
            }
            switch (k)
            {
                case "descr": descr = value; break;
                case "fortran_order": fortran = value; break;
                case "shape": shape = value; break;
                default: throw fail($"malformed header dict: unexpected key '{k}' (expected exactly 'descr', 'fortran_order' and 'shape')", null);
            }
        }
        foreach (var required in new[] { "descr", "fortran_order", "shape" })
        {
            if (!seen.Contains(required))
            {
                throw fail($"malformed header dict: missing key '{required}'", null);
            }
        }

        // dtype
        if (descr is PyList)
        {
            throw fail("structured dtypes (a list descr) are not supported", null);
        }
        if (descr is not string descrText)
        {
            throw fail($"malformed header dict: 'descr' must be a string, not {PyRepr(descr)}", null);
        }
        var (dtype, bigEndian) = ParseDescr(descrText, fail);

        // order
        if (fortran is not bool isFortran)
        {
            throw fail($"malformed header dict: 'fortran_order' must be True or False, not {PyRepr(fortran)}", null);
        }

        // shape
        IReadOnlyList<object?> items = shape switch
        {
            PyTuple t => t.Items,
            PyList l => l.Items,
            _ => throw fail($"malformed header dict: 'shape' must be a tuple of integers, not {PyRepr(shape)}", null),
        };
        var dims = new long[items.Count];
        for (int i = 0; i < dims.Length; i++)
        {
            if (items[i] is not long d)
            {
                throw fail($"malformed header dict: 'shape' must be a tuple of integers, not {PyRepr(shape)}", null);
            }
            dims[i] = d;
        }
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] < 0)
            {
                throw fail($"shape {TensorBytes.ShapeText(dims)} has a negative dimension {dims[i]}", null);
            }
            if (dims[i] > int.MaxValue)
            {
                throw fail($"shape {TensorBytes.ShapeText(dims)} has dimension {dims[i]}, beyond {int.MaxValue}", null);
            }
        }
        return (dtype, dims, bigEndian, isFortran && dims.Length >= 2);
    }

    // The dtype and whether its elements must be byte-reversed (big-endian and more than one byte wide).
    private static (DType dtype, bool bigEndian) ParseDescr(string descr, Func<string, Exception?, TensorFileException> fail)
    {
        char order = descr.Length > 0 && descr[0] is '<' or '>' or '|' or '=' ? descr[0] : '=';
        string code = order == '=' && !descr.StartsWith('=') ? descr : descr[1..];
        DType? dtype = code switch
        {
            "f2" => DType.F16,
            "f4" => DType.F32,
            "f8" => DType.F64,
            "i4" => DType.I32,
            "i8" => DType.I64,
            "u1" => DType.U8,
            "b1" or "?" => DType.Bool,
            _ => null,
        };
        if (dtype is not DType known)
        {
            throw fail($"unknown dtype '{Clip(descr)}' (supported: f2, f4, f8, i4, i8, u1, b1)", null);
        }
        return (known, order == '>' && NdArray.ElementSize(known) > 1);
    }

    private static string Clip(string s) => s.Length > 40 ? s[..40] + "..." : s;

    private static int[] ToIntDims(long[] dims) => Array.ConvertAll(dims, d => (int)d);

    private static string Hex(ReadOnlySpan<byte> bytes) =>
        bytes.IsEmpty ? "(none)" : Convert.ToHexString(bytes).Chunk(2).Select(c => new string(c)).Aggregate((a, b) => a + " " + b);

    // A short, one-line excerpt of header text for messages.
    private static string Snippet(string text)
    {
        var trimmed = text.TrimEnd(' ', '\n');
        var escaped = trimmed.Replace("\n", "\\n").Replace("\r", "\\r").Replace("\t", "\\t");
        return escaped.Length > 120 ? "\"" + escaped[..120] + "...\"" : "\"" + escaped + "\"";
    }

    private static string PyRepr(object? value) => value switch
    {
        null => "None",
        string s => $"'{Clip(s)}'",
        bool b => b ? "True" : "False",
        long l => l.ToString(),
        PyTuple => "a tuple",
        PyList => "a list",
        PyDict => "a dict",
        _ => value.ToString() ?? "?",
    };
}
