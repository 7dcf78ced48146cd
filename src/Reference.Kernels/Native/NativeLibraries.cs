using System.Reflection;
using System.Runtime.InteropServices;

namespace Reference.Kernels.Native;

/// <summary>
/// Finds the project's own native libraries (built from native/ by native/build.sh) for every <c>DllImport</c> or
/// <c>LibraryImport</c> in this assembly whose library name starts with <c>reference_</c>, e.g. <c>reference_lemon</c>
/// (file <c>libreference_lemon.so</c> on Linux). The search order:
/// <list type="number">
/// <item>the directory in the environment variable <c>REFERENCE_NATIVE_DIR</c>;</item>
/// <item><c>&lt;repository&gt;/native/build</c>, the repository being the nearest ancestor of the running application or
/// of this assembly that holds <c>Reference.sln</c>;</item>
/// <item>the directory of the running application, then that of this assembly.</item>
/// </list>
/// Other library names fall through to the runtime's default probing. A .NET assembly can register only one resolver,
/// so every native binding in Reference.Kernels goes through this class (call <see cref="EnsureRegistered"/> first).
/// </summary>
public static class NativeLibraries
{
    private static readonly object Gate = new();
    private static bool registered;

    /// <summary>The environment variable naming a directory that holds the native libraries.</summary>
    public const string DirectoryVariable = "REFERENCE_NATIVE_DIR";

    /// <summary>Registers the resolver for this assembly (idempotent, thread-safe).</summary>
    public static void EnsureRegistered()
    {
        lock (Gate)
        {
            if (registered) return;
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
            registered = true;
        }
    }

    /// <summary>The directories searched, in order (existing or not; duplicates removed).</summary>
    /// <returns>Absolute directory paths.</returns>
    public static IReadOnlyList<string> SearchDirectories()
    {
        var directories = new List<string>();
        string? fromEnvironment = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment)) directories.Add(Path.GetFullPath(fromEnvironment));
        string assemblyDirectory = Path.GetDirectoryName(typeof(NativeLibraries).Assembly.Location) ?? AppContext.BaseDirectory;
        foreach (string start in new[] { AppContext.BaseDirectory, assemblyDirectory })
        {
            string? root = FindRepositoryRoot(start);
            if (root is not null) directories.Add(Path.Combine(root, "native", "build"));
        }
        directories.Add(AppContext.BaseDirectory);
        directories.Add(assemblyDirectory);
        return directories.Select(d => Path.TrimEndingDirectorySeparator(Path.GetFullPath(d))).Distinct().ToList();
    }

    /// <summary>The platform's file name for a library name: <c>libNAME.so</c>, <c>libNAME.dylib</c> or <c>NAME.dll</c>.</summary>
    /// <param name="libraryName">The name without prefix or extension, e.g. <c>reference_lemon</c>.</param>
    /// <returns>The file name.</returns>
    public static string FileName(string libraryName) =>
        OperatingSystem.IsWindows() ? libraryName + ".dll"
        : OperatingSystem.IsMacOS() ? "lib" + libraryName + ".dylib"
        : "lib" + libraryName + ".so";

    /// <summary>Loads a project library from the first search directory that holds it.</summary>
    /// <param name="libraryName">The name without prefix or extension, e.g. <c>reference_lemon</c>.</param>
    /// <param name="handle">The loaded library's handle, or zero.</param>
    /// <returns>True when loaded.</returns>
    public static bool TryLoad(string libraryName, out IntPtr handle)
    {
        string file = FileName(libraryName);
        foreach (string directory in SearchDirectories())
        {
            string candidate = Path.Combine(directory, file);
            if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out handle)) return true;
        }
        handle = IntPtr.Zero;
        return false;
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (!libraryName.StartsWith("reference_", StringComparison.Ordinal)) return IntPtr.Zero;
        return TryLoad(libraryName, out IntPtr handle) ? handle : IntPtr.Zero;
    }

    private static string? FindRepositoryRoot(string start)
    {
        for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            if (File.Exists(Path.Combine(directory.FullName, "Reference.sln"))) return directory.FullName;
        return null;
    }
}
