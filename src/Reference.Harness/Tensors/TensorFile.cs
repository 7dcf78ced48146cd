using System.Collections.ObjectModel;

namespace Reference.Harness.Tensors;

/// <summary>
/// Reads and writes tensor files by extension: <c>.npz</c> (<see cref="Npz"/>), <c>.safetensors</c>
/// (<see cref="SafeTensors"/>) and <c>.npy</c> (<see cref="Npy"/>; one array, named by the file's stem).
/// Every failure — a missing file, an unknown extension, a malformed file, an array the format cannot hold —
/// is a <see cref="TensorFileException"/> whose one-line message names the file, the array and the problem.
/// </summary>
public static class TensorFile
{
    /// <summary>Reads every array of a tensor file, in file order.</summary>
    /// <param name="path">A <c>.npz</c>, <c>.safetensors</c> or <c>.npy</c> file (extension case-insensitive).</param>
    /// <returns>The arrays by name; for .npy, one array named by the file name without its extension.</returns>
    /// <exception cref="TensorFileException">Unknown extension, missing or unreadable file, malformed contents.</exception>
    public static IReadOnlyDictionary<string, NdArray> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".npz":
                return Npz.Read(path);
            case ".safetensors":
                return SafeTensors.Read(path);
            case ".npy":
                using (var stream = OpenRead(path))
                {
                    var array = WrapIOErrors(path, () => Npy.Read(stream, path));
                    return new ReadOnlyDictionary<string, NdArray>(
                        new Dictionary<string, NdArray> { [Path.GetFileNameWithoutExtension(path)] = array });
                }
            default:
                throw UnknownExtension(path);
        }
    }

    /// <summary>Writes arrays to a tensor file chosen by extension, replacing it.</summary>
    /// <param name="path">A <c>.npz</c> (stored entries), <c>.safetensors</c> or <c>.npy</c> file.</param>
    /// <param name="arrays">The arrays by name, written in the given order. For .npy exactly one array, whose
    /// name is not stored (the file name names it). .npy and .npz cannot hold bf16.</param>
    /// <exception cref="TensorFileException">Unknown extension, a format that cannot hold the arrays, or the
    /// file cannot be created.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, NdArray>> arrays)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(arrays);
        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".npz":
                Npz.Write(path, arrays);
                return;
            case ".safetensors":
                SafeTensors.Write(path, arrays);
                return;
            case ".npy":
                var list = arrays.ToList();
                if (list.Count != 1)
                {
                    throw new TensorFileException(path, null, $"an .npy file holds exactly one array, but {list.Count} were given");
                }
                var (name, array) = list[0];
                ArgumentNullException.ThrowIfNull(array, nameof(arrays));
                if (array.DType == DType.BF16)
                {
                    throw new TensorFileException(path, name, "bf16 has no numpy dtype; store it in .safetensors instead");
                }
                using (var stream = CreateFile(path))
                {
                    WrapIOErrors(path, () => Npy.Write(stream, array));
                }
                return;
            default:
                throw UnknownExtension(path);
        }
    }

    private static TensorFileException UnknownExtension(string path) =>
        new(path, null, $"unknown tensor file extension '{Path.GetExtension(path)}' (expected .npy, .npz or .safetensors)");

    /// <summary>Opens a file for reading, turning the usual failures into <see cref="TensorFileException"/>.</summary>
    internal static FileStream OpenRead(string path)
    {
        if (Directory.Exists(path))
        {
            throw new TensorFileException(path, null, "is a directory, not a file");
        }
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (FileNotFoundException e)
        {
            throw new TensorFileException(path, null, "file not found", e);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new TensorFileException(path, null, "file not found (its directory does not exist)", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(path, null, $"cannot open the file: {e.Message}", e);
        }
    }

    /// <summary>Creates (or truncates) a file for writing, turning the usual failures into <see cref="TensorFileException"/>.</summary>
    internal static FileStream CreateFile(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(path, null, $"cannot create the file: {e.Message}", e);
        }
    }

    /// <summary>Runs a read or write, turning I/O errors from the file system into <see cref="TensorFileException"/>.</summary>
    internal static T WrapIOErrors<T>(string path, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(path, null, $"I/O error: {e.Message}", e);
        }
    }

    /// <summary>Runs a write, turning I/O errors from the file system into <see cref="TensorFileException"/>.</summary>
    internal static void WrapIOErrors(string path, Action action) =>
        WrapIOErrors(path, () => { action(); return true; });
}
