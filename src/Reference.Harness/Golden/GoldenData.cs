using System.Security.Cryptography;
using System.Text.Json;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Golden;

/// <summary>One golden case: data/golden/&lt;algorithm&gt;/&lt;case&gt;/{input.npz, expected.npz, params.json}.</summary>
/// <param name="Algorithm">The algorithm's CLI name.</param>
/// <param name="Name">The case directory's name.</param>
/// <param name="Directory">The case directory.</param>
/// <param name="Parameters">The parameters from params.json, as text.</param>
public sealed record GoldenCase(string Algorithm, string Name, string Directory, IReadOnlyDictionary<string, string> Parameters)
{
    /// <summary>The input file.</summary>
    public string InputPath => Path.Combine(Directory, "input.npz");

    /// <summary>The expected outputs file.</summary>
    public string ExpectedPath => Path.Combine(Directory, "expected.npz");

    /// <summary>Reads the inputs.</summary>
    public IReadOnlyDictionary<string, NdArray> ReadInputs() => TensorFile.Read(InputPath);

    /// <summary>Reads the expected outputs.</summary>
    public IReadOnlyDictionary<string, NdArray> ReadExpected() => TensorFile.Read(ExpectedPath);
}

/// <summary>
/// Access to the golden data under data/golden: cases, their parameters, and each algorithm's MANIFEST of sha256 sums
/// (the format of <c>sha256sum</c>: "HASH  case/file", so <c>sha256sum -c MANIFEST</c> works in the directory).
/// </summary>
public sealed class GoldenData
{
    /// <summary>Opens the golden data under a root directory (the one that holds <c>golden/</c>).</summary>
    /// <param name="dataRoot">The data directory, e.g. the repository's data/.</param>
    public GoldenData(string dataRoot) => Root = Path.Combine(dataRoot, "golden");

    /// <summary>The golden directory.</summary>
    public string Root { get; }

    /// <summary>Finds the repository's data/ directory from a start directory, walking up; null when there is none.</summary>
    public static string? Locate(string startDirectory)
    {
        for (var dir = new DirectoryInfo(startDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "data", "golden");
            if (System.IO.Directory.Exists(candidate))
            {
                return Path.Combine(dir.FullName, "data");
            }
        }
        return null;
    }

    /// <summary>The cases of an algorithm, by name; empty when it has none.</summary>
    public IReadOnlyList<GoldenCase> Cases(string algorithm)
    {
        var dir = Path.Combine(Root, algorithm);
        if (!System.IO.Directory.Exists(dir))
        {
            return Array.Empty<GoldenCase>();
        }
        return System.IO.Directory.GetDirectories(dir)
            .OrderBy(d => d, StringComparer.Ordinal)
            .Select(d => new GoldenCase(algorithm, Path.GetFileName(d), d, ReadParameters(Path.Combine(d, "params.json"))))
            .ToList();
    }

    /// <summary>Reads a params.json object; numbers, strings and booleans become their text. A missing file means no parameters.</summary>
    /// <exception cref="InputException">The file is not a flat JSON object.</exception>
    public static IReadOnlyDictionary<string, string> ReadParameters(string path)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path))
        {
            return result;
        }
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InputException($"{path}: must hold a JSON object of parameters");
            }
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                result[property.Name] = property.Value.ValueKind switch
                {
                    JsonValueKind.String => property.Value.GetString()!,
                    JsonValueKind.Number => property.Value.GetRawText(),
                    JsonValueKind.True => "true",
                    JsonValueKind.False => "false",
                    _ => throw new InputException($"{path}: parameter '{property.Name}' must be a string, number or boolean"),
                };
            }
        }
        catch (JsonException ex)
        {
            throw new InputException($"{path}: not valid JSON ({ex.Message})", ex);
        }
        return result;
    }

    /// <summary>The sha256 of a file, lower-case hex.</summary>
    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Checks an algorithm's MANIFEST: every listed file exists with its hash, and every file in a case is listed.</summary>
    /// <returns>The problems found; empty when the manifest holds.</returns>
    public IReadOnlyList<string> VerifyManifest(string algorithm)
    {
        var dir = Path.Combine(Root, algorithm);
        var manifest = Path.Combine(dir, "MANIFEST");
        var problems = new List<string>();
        if (!File.Exists(manifest))
        {
            return System.IO.Directory.Exists(dir) ? [$"{manifest}: missing"] : [];
        }
        var listed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in File.ReadAllLines(manifest).Where(l => l.Trim().Length > 0))
        {
            var parts = line.Split("  ", 2);
            if (parts.Length != 2 || parts[0].Length != 64)
            {
                problems.Add($"{manifest}: malformed line '{line}'");
                continue;
            }
            listed.Add(parts[1]);
            var file = Path.Combine(dir, parts[1]);
            if (!File.Exists(file))
            {
                problems.Add($"{manifest}: lists {parts[1]}, which does not exist");
            }
            else if (Sha256(file) != parts[0])
            {
                problems.Add($"{manifest}: {parts[1]} has sha256 {Sha256(file)}, not {parts[0]}");
            }
        }
        foreach (var c in Cases(algorithm))
        {
            foreach (var file in System.IO.Directory.GetFiles(c.Directory))
            {
                var relative = c.Name + "/" + Path.GetFileName(file);
                if (!listed.Contains(relative))
                {
                    problems.Add($"{manifest}: does not list {relative}");
                }
            }
        }
        return problems;
    }

    /// <summary>Writes a MANIFEST for an algorithm from the files now in its cases.</summary>
    public void WriteManifest(string algorithm)
    {
        var lines = Cases(algorithm)
            .SelectMany(c => System.IO.Directory.GetFiles(c.Directory).Select(f => (Relative: c.Name + "/" + Path.GetFileName(f), Full: f)))
            .OrderBy(x => x.Relative, StringComparer.Ordinal)
            .Select(x => $"{Sha256(x.Full)}  {x.Relative}");
        File.WriteAllText(Path.Combine(Root, algorithm, "MANIFEST"), string.Join("\n", lines) + "\n");
    }
}
