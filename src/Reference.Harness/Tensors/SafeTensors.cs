using System.Buffers.Binary;
using System.Collections.ObjectModel;
using System.Text.Json;
using System.Text.Unicode;

namespace Reference.Harness.Tensors;

/// <summary>
/// Reads and writes the <c>.safetensors</c> format (Hugging Face safetensors). Layout: an 8-byte little-endian
/// unsigned header length N; N bytes of UTF-8 JSON mapping each array name to
/// <c>{"dtype": ..., "shape": [...], "data_offsets": [begin, end]}</c>, plus an optional
/// <c>"__metadata__"</c> object of string to string; then the data buffer. Offsets are relative to the start
/// of the buffer, and the arrays must cover the buffer exactly: no overlaps, no gaps, nothing left over.
/// dtypes: <c>F16 BF16 F32 F64 I32 I64 BOOL U8</c>.
/// <para>
/// Order: <see cref="Read(Stream, string)"/> returns the arrays in the order the header lists them.
/// <see cref="Write(string, IEnumerable{KeyValuePair{string, NdArray}})"/> keeps insertion order, both in the
/// header and in the buffer. The header is padded with spaces to a multiple of 8 bytes, so that every array's
/// data starts 8-byte aligned relative to the file start when element sizes allow.
/// </para>
/// <para>
/// Safety: the header length is checked against the file (and the format's 100 MB limit) before the header
/// is read, and every array's offsets and size are checked against the buffer's length before the buffer is
/// read; a header that claims more than the file holds is rejected without allocating it.
/// </para>
/// </summary>
public static class SafeTensors
{
    /// <summary>The longest header the format allows (the reference implementation's limit).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const string MetadataKey = "__metadata__";

    /// <summary>Reads every array of a .safetensors file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The arrays by name, in header order.</returns>
    /// <exception cref="TensorFileException">The file is missing, unreadable or malformed.</exception>
    public static IReadOnlyDictionary<string, NdArray> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var stream = TensorFile.OpenRead(path);
        return TensorFile.WrapIOErrors(path, () => Read(stream, path));
    }

    /// <summary>Reads every array of a .safetensors file held in a stream, from its position to its end.</summary>
    /// <param name="stream">The stream. If it can seek, its remaining length is the file's length.</param>
    /// <param name="sourceName">The file name to put in error messages.</param>
    /// <returns>The arrays by name, in header order.</returns>
    /// <exception cref="TensorFileException">The bytes are not a supported, well-formed .safetensors file.</exception>
    public static IReadOnlyDictionary<string, NdArray> Read(Stream stream, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(sourceName);
        TensorFileException Fail(string? name, string problem, Exception? inner = null) => new(sourceName, name, problem, inner);

        // 1. Header length: u64 little-endian.
        var lengthBytes = TensorBytes.ReadBounded(stream, 8);
        if (lengthBytes.Length < 8)
        {
            throw Fail(null, $"truncated file: {lengthBytes.Length} bytes, too short for the 8-byte header length");
        }
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        long? available = stream.CanSeek ? stream.Length - stream.Position : null;
        if (available is long total && headerLength > (ulong)total)
        {
            throw Fail(null, $"truncated header: the header length is {headerLength} bytes but only {total} remain");
        }
        if (headerLength > MaxHeaderLength)
        {
            throw Fail(null, $"header length {headerLength} exceeds the format's limit of {MaxHeaderLength} bytes");
        }

        // 2. The JSON header.
        var header = TensorBytes.ReadBounded(stream, (long)headerLength);
        if ((ulong)header.Length < headerLength)
        {
            throw Fail(null, $"truncated header: the header length is {headerLength} bytes but only {header.Length} remain");
        }
        if (!Utf8.IsValid(header))
        {
            throw Fail(null, "the header is not valid UTF-8");
        }
        var entries = ParseHeader(header, Fail);

        // 3. The buffer's length: known now for a seekable stream, otherwise after reading it.
        byte[]? buffer = null;
        long bufferLength;
        if (available is long remaining)
        {
            bufferLength = remaining - (long)headerLength;
        }
        else
        {
            buffer = TensorBytes.ReadBounded(stream, TensorBytes.MaxArrayBytes);
            bufferLength = buffer.Length;
            if (TensorBytes.CountRemaining(stream, 1) > 0)
            {
                throw Fail(null, $"the data buffer exceeds this reader's limit of {TensorBytes.MaxArrayBytes} bytes");
            }
        }

        // 4. Offsets: in range, sized for the shape, covering the buffer exactly.
        CheckOffsets(entries, bufferLength, Fail);
        if (bufferLength > TensorBytes.MaxArrayBytes)
        {
            throw Fail(null, $"the data buffer has {bufferLength} bytes, more than this reader's limit of {TensorBytes.MaxArrayBytes}");
        }

        // 5. The data.
        if (buffer is null)
        {
            buffer = TensorBytes.ReadBounded(stream, bufferLength);
            if (buffer.Length < bufferLength)
            {
                throw Fail(null, $"truncated data: the data buffer should have {bufferLength} bytes but only {buffer.Length} remain");
            }
        }
        var result = new OrderedDictionary<string, NdArray>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            var bytes = buffer.AsSpan((int)e.Begin, (int)(e.End - e.Begin));
            if (e.DType == DType.Bool)
            {
                long bad = TensorBytes.FirstInvalidBool(bytes);
                if (bad >= 0)
                {
                    throw Fail(e.Name, $"bool element at {NdArray.IndexText(e.Shape, bad)} is the byte 0x{bytes[(int)bad]:X2}; only 0 and 1 are valid");
                }
            }
            result.Add(e.Name, TensorBytes.FromLittleEndian(e.DType, e.Shape, bytes));
        }
        return new ReadOnlyDictionary<string, NdArray>(result);
    }

    /// <summary>Writes arrays to a .safetensors file (replacing it), header and buffer in the given order.</summary>
    /// <param name="path">The file to create.</param>
    /// <param name="arrays">The arrays by name; names must be distinct and not <c>__metadata__</c>.</param>
    /// <exception cref="TensorFileException">A name repeats or is reserved, or the file cannot be created.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, NdArray>> arrays)
    {
        ArgumentNullException.ThrowIfNull(path);
        var list = Check(arrays, (name, problem) => new TensorFileException(path, name, problem));
        using var file = TensorFile.CreateFile(path);
        TensorFile.WrapIOErrors(path, () => WriteCore(file, list));
    }

    /// <summary>Writes arrays in .safetensors format to a stream, header and buffer in the given order.</summary>
    /// <param name="stream">The stream to write to.</param>
    /// <param name="arrays">The arrays by name; names must be distinct and not <c>__metadata__</c>.</param>
    /// <exception cref="ArgumentException">A name repeats or is reserved.</exception>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, NdArray>> arrays)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var list = Check(arrays, (name, problem) => new ArgumentException($"array '{name}': {problem}", nameof(arrays)));
        WriteCore(stream, list);
    }

    /// <summary>The format's name for a dtype.</summary>
    /// <param name="dtype">The dtype.</param>
    /// <returns><c>F16</c>, <c>BF16</c>, <c>F32</c>, <c>F64</c>, <c>I32</c>, <c>I64</c>, <c>U8</c> or <c>BOOL</c>.</returns>
    public static string DTypeName(DType dtype) => dtype switch
    {
        DType.F16 => "F16",
        DType.BF16 => "BF16",
        DType.F32 => "F32",
        DType.F64 => "F64",
        DType.I32 => "I32",
        DType.I64 => "I64",
        DType.U8 => "U8",
        DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    private static void WriteCore(Stream stream, List<KeyValuePair<string, NdArray>> arrays)
    {
        // 1. The header: offsets follow the given order, each array right after the previous one.
        var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            long offset = 0;
            foreach (var (name, array) in arrays)
            {
                long size = TensorBytes.DataBytes(array);
                writer.WriteStartObject(name);
                writer.WriteString("dtype", DTypeName(array.DType));
                writer.WriteStartArray("shape");
                foreach (var d in array.Shape)
                {
                    writer.WriteNumberValue(d);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + size);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += size;
            }
            writer.WriteEndObject();
        }

        // 2. Pad with spaces to a multiple of 8 bytes.
        while (json.Length % 8 != 0)
        {
            json.WriteByte((byte)' ');
        }

        // 3. Length, header, buffer.
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        stream.Write(length);
        json.Position = 0;
        json.CopyTo(stream);
        foreach (var (_, array) in arrays)
        {
            TensorBytes.WriteLittleEndian(stream, array);
        }
    }

    private static List<KeyValuePair<string, NdArray>> Check(
        IEnumerable<KeyValuePair<string, NdArray>> arrays, Func<string, string, Exception> fail)
    {
        ArgumentNullException.ThrowIfNull(arrays);
        var list = arrays.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, array) in list)
        {
            ArgumentNullException.ThrowIfNull(name, nameof(arrays));
            ArgumentNullException.ThrowIfNull(array, nameof(arrays));
            if (name == MetadataKey)
            {
                throw fail(name, $"the name {MetadataKey} is reserved by the format for metadata");
            }
            if (!names.Add(name))
            {
                throw fail(name, "the name appears twice");
            }
        }
        return list;
    }

    private sealed record Entry(string Name, DType DType, int[] Shape, ulong Begin, ulong End);

    private static List<Entry> ParseHeader(byte[] header, Func<string?, string, Exception?, TensorFileException> fail)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw fail(null, $"the header is not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw fail(null, $"the header must be a JSON object, not {Kind(root)}", null);
            }
            var entries = new List<Entry>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (!names.Add(name))
                {
                    throw fail(name, "the name appears twice in the header", null);
                }
                if (name == MetadataKey)
                {
                    CheckMetadata(property.Value, fail);
                    continue;
                }
                entries.Add(ParseEntry(name, property.Value, fail));
            }
            return entries;
        }
    }

    private static void CheckMetadata(JsonElement metadata, Func<string?, string, Exception?, TensorFileException> fail)
    {
        if (metadata.ValueKind != JsonValueKind.Object)
        {
            throw fail(null, $"'{MetadataKey}' must be an object of strings, not {Kind(metadata)}", null);
        }
        foreach (var item in metadata.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw fail(null, $"'{MetadataKey}' must map strings to strings, but '{item.Name}' holds {Kind(item.Value)}", null);
            }
        }
    }

    private static Entry ParseEntry(string name, JsonElement info, Func<string?, string, Exception?, TensorFileException> fail)
    {
        if (info.ValueKind != JsonValueKind.Object)
        {
            throw fail(name, $"the header entry must be an object with dtype, shape and data_offsets, not {Kind(info)}", null);
        }
        JsonElement? dtypeElement = null, shapeElement = null, offsetsElement = null;
        foreach (var field in info.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype": dtypeElement = field.Value; break;
                case "shape": shapeElement = field.Value; break;
                case "data_offsets": offsetsElement = field.Value; break;
            }
        }

        // dtype
        if (dtypeElement is not JsonElement dt)
        {
            throw fail(name, "the header entry has no 'dtype'", null);
        }
        if (dt.ValueKind != JsonValueKind.String)
        {
            throw fail(name, $"'dtype' must be a string, not {Kind(dt)}", null);
        }
        string dtypeName = dt.GetString()!;
        DType dtype = dtypeName switch
        {
            "F16" => DType.F16,
            "BF16" => DType.BF16,
            "F32" => DType.F32,
            "F64" => DType.F64,
            "I32" => DType.I32,
            "I64" => DType.I64,
            "U8" => DType.U8,
            "BOOL" => DType.Bool,
            _ => throw fail(name, $"unknown dtype '{Clip(dtypeName)}' (supported: F16, BF16, F32, F64, I32, I64, U8, BOOL)", null),
        };

        // shape
        if (shapeElement is not JsonElement sh)
        {
            throw fail(name, "the header entry has no 'shape'", null);
        }
        if (sh.ValueKind != JsonValueKind.Array)
        {
            throw fail(name, $"'shape' must be an array of non-negative integers, not {Kind(sh)}", null);
        }
        var dims = new List<long>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
            {
                throw fail(name, $"'shape' must be an array of non-negative integers, but holds {Clip(d.GetRawText())}", null);
            }
            if (dim > int.MaxValue)
            {
                throw fail(name, $"'shape' has dimension {dim}, beyond {int.MaxValue}", null);
            }
            dims.Add(dim);
        }

        // data_offsets
        if (offsetsElement is not JsonElement off)
        {
            throw fail(name, "the header entry has no 'data_offsets'", null);
        }
        ulong begin = 0, end = 0;
        bool offsetsOk = off.ValueKind == JsonValueKind.Array && off.GetArrayLength() == 2
            && off[0].ValueKind == JsonValueKind.Number && off[0].TryGetUInt64(out begin)
            && off[1].ValueKind == JsonValueKind.Number && off[1].TryGetUInt64(out end);
        if (!offsetsOk)
        {
            throw fail(name, $"'data_offsets' must be two non-negative integers [begin, end], not {Clip(off.GetRawText())}", null);
        }
        if (end < begin)
        {
            throw fail(name, $"data_offsets [{begin}, {end}] end before they begin", null);
        }
        string shapeText = TensorBytes.ShapeText(dims);
        long? needed = TensorBytes.ByteCount(dims, NdArray.ElementSize(dtype));
        if (needed is null || (ulong)needed.Value != end - begin)
        {
            string need = needed is long n ? $"{n} bytes" : "more bytes than 64-bit sizes can count";
            throw fail(name, $"shape {shapeText} of {dtypeName} needs {need} but data_offsets [{begin}, {end}] span {end - begin}", null);
        }
        return new Entry(name, dtype, dims.Select(d => (int)d).ToArray(), begin, end);
    }

    // The spec requires the arrays to tile the buffer: sorted by offset, each begins where the previous ends,
    // the first at 0 and the last at the buffer's end.
    private static void CheckOffsets(List<Entry> entries, long bufferLength, Func<string?, string, Exception?, TensorFileException> fail)
    {
        foreach (var e in entries)
        {
            if (e.End > (ulong)bufferLength)
            {
                throw fail(e.Name, $"data_offsets [{e.Begin}, {e.End}] run past the end of the {bufferLength}-byte data buffer", null);
            }
        }
        var sorted = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        ulong cursor = 0;
        Entry? previous = null;
        foreach (var e in sorted)
        {
            if (e.Begin < cursor)
            {
                throw fail(e.Name, $"data_offsets [{e.Begin}, {e.End}] overlap array '{previous!.Name}' at [{previous.Begin}, {previous.End}]", null);
            }
            if (e.Begin > cursor)
            {
                string after = previous is null ? "the start of the buffer" : $"array '{previous.Name}' ends at {cursor}";
                throw fail(e.Name, $"data_offsets [{e.Begin}, {e.End}] leave a gap of {e.Begin - cursor} bytes after {after} (the arrays must cover the buffer without gaps)", null);
            }
            cursor = e.End;
            previous = e;
        }
        if (cursor != (ulong)bufferLength)
        {
            throw fail(null, $"the data buffer has {bufferLength} bytes but the arrays cover only the first {cursor} ({(ulong)bufferLength - cursor} bytes unaccounted for)", null);
        }
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => e.ValueKind.ToString(),
    };

    private static string Clip(string s) => s.Length > 40 ? s[..40] + "..." : s;
}
