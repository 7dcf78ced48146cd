using System.Collections.ObjectModel;
using System.IO.Compression;

namespace Reference.Harness.Tensors;

/// <summary>
/// Reads and writes numpy's <c>.npz</c> archives (<c>numpy.savez</c>, <c>numpy.savez_compressed</c>): a zip file
/// whose entries are .npy files, one per array, the array name being the entry name without <c>.npy</c>.
/// Entries may be stored or deflated. Every entry is read with the <see cref="Npy"/> reader's checks; in addition
/// the archive must be a zip, every entry must end in <c>.npy</c>, and no name may appear twice.
/// <para>
/// Safety: an entry's declared uncompressed size is compared with the size its .npy header and shape imply
/// before anything of that size is allocated; the decompressed bytes are then read into a buffer that grows
/// only as they arrive and are required to end exactly where the shape says. So neither a false size in the
/// zip directory nor a false shape in the header can make the reader allocate memory the data does not fill.
/// </para>
/// </summary>
public static class Npz
{
    // Fixed entry time stamps make written archives byte-for-byte reproducible (1980-01-01 is the DOS epoch).
    private static readonly DateTimeOffset EntryTime = new(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Reads every array of an .npz file, in the archive's entry order.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The arrays by name (entry names without <c>.npy</c>), in entry order.</returns>
    /// <exception cref="TensorFileException">The file is missing, unreadable or malformed.</exception>
    public static IReadOnlyDictionary<string, NdArray> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var stream = TensorFile.OpenRead(path);
        return TensorFile.WrapIOErrors(path, () => Read(stream, path));
    }

    /// <summary>Reads every array of an .npz archive held in a stream.</summary>
    /// <param name="stream">The archive; a non-seekable stream is buffered by <see cref="ZipArchive"/>.</param>
    /// <param name="sourceName">The file name to put in error messages.</param>
    /// <returns>The arrays by name (entry names without <c>.npy</c>), in entry order.</returns>
    /// <exception cref="TensorFileException">The archive is not a zip of well-formed .npy entries.</exception>
    public static IReadOnlyDictionary<string, NdArray> Read(Stream stream, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(sourceName);

        // 1. The zip directory.
        ZipArchive zip;
        IReadOnlyCollection<ZipArchiveEntry> entries;
        try
        {
            zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            entries = zip.Entries;
        }
        catch (Exception e) when (IsZipFailure(e))
        {
            throw new TensorFileException(sourceName, null, $"not a readable zip archive (an .npz must be one): {e.Message}", e);
        }

        // 2. Each entry is one .npy array.
        using (zip)
        {
            var result = new OrderedDictionary<string, NdArray>(StringComparer.Ordinal);
            foreach (var entry in entries)
            {
                string entryName = entry.FullName;
                if (!entryName.EndsWith(".npy", StringComparison.Ordinal))
                {
                    throw new TensorFileException(sourceName, null,
                        $"entry '{entryName}' is not an .npy file (an .npz holds only .npy entries)");
                }
                string name = entryName[..^".npy".Length];
                if (result.ContainsKey(name))
                {
                    throw new TensorFileException(sourceName, name, $"the entry '{entryName}' appears twice in the archive");
                }
                NdArray array;
                try
                {
                    using var entryStream = entry.Open();
                    array = Npy.ReadCore(entryStream, entry.Length, sourceName, name);
                }
                catch (Exception e) when (IsZipFailure(e))
                {
                    throw new TensorFileException(sourceName, name, $"cannot decompress the zip entry: {e.Message}", e);
                }
                result.Add(name, array);
            }
            return new ReadOnlyDictionary<string, NdArray>(result);
        }
    }

    /// <summary>Writes arrays to an .npz file (replacing it), one .npy entry per array, in the given order.</summary>
    /// <param name="path">The file to create.</param>
    /// <param name="arrays">The arrays by name; names must be distinct; bf16 is not allowed (numpy lacks it).</param>
    /// <param name="compress">True for deflated entries (<c>numpy.savez_compressed</c>), false for stored ones (<c>numpy.savez</c>).</param>
    /// <exception cref="TensorFileException">A name repeats, an array is bf16, or the file cannot be created.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, NdArray>> arrays, bool compress = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        var list = Check(arrays, (name, problem) => new TensorFileException(path, name, problem));
        using var file = TensorFile.CreateFile(path);
        TensorFile.WrapIOErrors(path, () => WriteCore(file, list, compress));
    }

    /// <summary>Writes arrays as an .npz archive to a stream, one .npy entry per array, in the given order.</summary>
    /// <param name="stream">The stream to write the archive to (left open).</param>
    /// <param name="arrays">The arrays by name; names must be distinct; bf16 is not allowed.</param>
    /// <param name="compress">True for deflated entries, false for stored ones.</param>
    /// <exception cref="ArgumentException">A name repeats or an array is bf16.</exception>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, NdArray>> arrays, bool compress = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var list = Check(arrays, (name, problem) => new ArgumentException($"array '{name}': {problem}", nameof(arrays)));
        WriteCore(stream, list, compress);
    }

    private static void WriteCore(Stream stream, List<KeyValuePair<string, NdArray>> arrays, bool compress)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        foreach (var (name, array) in arrays)
        {
            // NoCompression makes ZipArchive use the "stored" method, as numpy.savez does.
            var entry = zip.CreateEntry(name + ".npy", compress ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
            entry.LastWriteTime = EntryTime;
            using var entryStream = entry.Open();
            Npy.Write(entryStream, array);
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
            if (!names.Add(name))
            {
                throw fail(name, "the name appears twice");
            }
            if (array.DType == DType.BF16)
            {
                throw fail(name, "bf16 has no numpy dtype; store it in .safetensors instead");
            }
        }
        return list;
    }

    // The exceptions System.IO.Compression raises for damaged or unsupported archives. Anything else
    // (including our own TensorFileException and OutOfMemoryException) passes through.
    private static bool IsZipFailure(Exception e) =>
        e is InvalidDataException or IOException or NotSupportedException or ArgumentException
            or InvalidOperationException or IndexOutOfRangeException or OverflowException;
}
