/// The oracle from other languages and as a package: the Python client (src/python, its pytest suite in tests/python),
/// the `reference` .NET tool (dotnet pack, dotnet tool install), the F# script tests/examples/route-and-check.fsx and
/// README's C# snippet. In CI (CI=true) a missing pytest fails; locally it is a visible skip.
module Reference.Tests.ClientTests

open System
open System.Diagnostics
open System.IO
open System.Text.RegularExpressions
open NUnit.Framework

/// Runs a process with extra environment variables and a working directory; returns exit code, stdout and stderr.
let private run (file: string) (args: string list) (env: (string * string) list) (cwd: string) =
    let psi =
        ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = cwd)

    for a in args do
        psi.ArgumentList.Add a

    for k, v in env do
        psi.Environment[k] <- v

    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result, err.Result

/// A fresh temporary directory, deleted by the returned disposable.
let private tempDir (prefix: string) =
    let d = Directory.CreateTempSubdirectory prefix

    d.FullName,
    { new IDisposable with
        member _.Dispose() =
            try
                d.Delete true
            with _ ->
                ()
    }

let private copyTree (src: string) (dst: string) =
    for f in Directory.EnumerateFiles(src, "*", SearchOption.AllDirectories) do
        let rel = Path.GetRelativePath(src, f)

        if not (rel.Split(Path.DirectorySeparatorChar) |> Array.exists (fun p -> p = "__pycache__" || p = "build")) then
            let target = Path.Combine(dst, rel)
            Directory.CreateDirectory(Path.GetDirectoryName target) |> ignore
            File.Copy(f, target)

/// The folder of the built CLI and libraries the suite runs against.
let private binDir = Path.GetDirectoryName typeof<Reference.Cli.Cli>.Assembly.Location

let private cliDll = typeof<Reference.Cli.Cli>.Assembly.Location

let private show (code: int, out: string, err: string) = $"exit {code}\nstdout:\n{out}\nstderr:\n{err}"

let ``the Python client installs with pip and passes its pytest suite with torch candidates`` () =
    Peers.requireModules
        [ "setuptools"; "pip"; "pytest"; "numpy"; "torch" ]
        "python3-setuptools python3-pip python3-pytest python3-numpy python3-torch"

    let tmp, cleanup = tempDir "reference-pyclient-"
    use _ = cleanup
    // pip builds in the source folder (build/, *.egg-info): build a copy, so the repository stays clean.
    let source = Path.Combine(tmp, "src")
    copyTree (Repo.path [ "src"; "python" ]) source
    let site = Path.Combine(tmp, "site")

    let pip =
        run
            Peers.python
            [
                "-m"
                "pip"
                "install"
                "--no-build-isolation"
                "--no-index"
                "--no-deps"
                "--disable-pip-version-check"
                "--target"
                site
                source
            ]
            []
            tmp

    let code, _, _ = pip
    Assert.That(code, Is.EqualTo 0, $"pip install failed\n{show pip}")
    Assert.That(File.Exists(Path.Combine(site, "reference_oracle", "__init__.py")), Is.True, "pip installed nothing")

    let pytest =
        run
            Peers.python
            [ "-m"; "pytest"; "-q"; "-rs"; "-p"; "no:cacheprovider"; Repo.path [ "tests"; "python" ] ]
            [
                "PYTHONPATH", site
                "REFERENCE_ORACLE_EXPECTED_DIR", site
                "REFERENCE_CLI", cliDll
                "PYTHONDONTWRITEBYTECODE", "1"
            ]
            tmp

    let code, out, _ = pytest
    Assert.That(code, Is.EqualTo 0, $"pytest tests/python failed\n{show pytest}")
    Assert.That(out, Does.Match @"(?m)^\d+ passed", show pytest)
    Assert.That(out, Does.Not.Contain "skipped", $"no test may skip here\n{show pytest}")

let ``dotnet pack makes the reference tool, which installs into a tool path, lists and checks`` () =
    let tmp, cleanup = tempDir "reference-tool-"
    use _ = cleanup
    let packages = Path.Combine(tmp, "packages")
    let tools = Path.Combine(tmp, "tools")
    // The pack builds the tool's own (ReadyToRun, linux-x64) publish; the solution's bin/ stays as it is.
    let pack =
        run
            "dotnet"
            [
                "pack"
                Repo.path [ "src"; "Reference.Cli" ]
                "-c"
                "Release"
                "-o"
                packages
                "-nologo"
                "-v"
                "quiet"
                "-p:TreatWarningsAsErrors=true"
            ]
            []
            Repo.root

    let code, _, _ = pack
    Assert.That(code, Is.EqualTo 0, $"dotnet pack failed\n{show pack}")

    let install =
        run
            "dotnet"
            [
                "tool"
                "install"
                "--tool-path"
                tools
                "--source"
                packages
                "--no-http-cache"
                "Reference.Cli"
            ]
            []
            tmp

    let code, _, _ = install
    Assert.That(code, Is.EqualTo 0, $"dotnet tool install failed\n{show install}")
    let reference = Path.Combine(tools, "reference")
    Assert.That(File.Exists reference, Is.True, $"no `reference` command in {tools}\n{show install}")

    let listed = run reference [ "list" ] [] tmp
    let code, out, _ = listed
    Assert.That(code, Is.EqualTo 0, show listed)

    for a in Reference.Harness.Registry.AlgorithmRegistry.All do
        Assert.That(out, Does.Contain(a.Name + ": " + a.Summary), $"`reference list` lacks {a.Name}\n{out}")

    // The installed tool judges a golden case's expected outputs as passing and a perturbed copy as failing.
    let case = Repo.path [ "data"; "golden"; "topk" ]
    let first = Directory.GetDirectories case |> Array.sort |> Array.head

    let check candidate =
        run
            reference
            [
                "check"
                "topk"
                "--input"
                Path.Combine(first, "input.npz")
                "--candidate"
                candidate
                "--params"
                Path.Combine(first, "params.json")
            ]
            []
            tmp

    let passed = check (Path.Combine(first, "expected.npz"))
    let code, _, _ = passed
    Assert.That(code, Is.EqualTo 0, show passed)
    let expected = Reference.Harness.Tensors.TensorFile.Read(Path.Combine(first, "expected.npz"))
    let weights = Array.copy (expected["weights"].Values<double>())
    weights[0] <- weights[0] * 1.01 + 1e-3

    let perturbed = Path.Combine(tmp, "perturbed.npz")

    Reference.Harness.Tensors.TensorFile.Write(
        perturbed,
        [
            Collections.Generic.KeyValuePair(
                "weights",
                Reference.Harness.Tensors.NdArray.Create(weights, Array.ofSeq expected["weights"].Shape)
            )
        ]
    )

    let failed = check perturbed
    let code, out, _ = failed
    Assert.That(code, Is.EqualTo 1, show failed)
    Assert.That(out, Does.Contain "FAIL weights", show failed)

let ``the F# script routes with a reference and checks candidates in memory`` () =
    let script = Repo.path [ "tests"; "examples"; "route-and-check.fsx" ]
    let fsi = run "dotnet" [ "fsi"; "--quiet"; script ] [] Repo.root
    let code, out, _ = fsi
    // The script exits 0 only when the faithful candidate passes and the broken one fails.
    Assert.That(code, Is.EqualTo 0, show fsi)
    Assert.That(out, Does.Contain "faithful passes, broken fails", show fsi)
    Assert.That(out, Does.Match @"(?m)^\s+FAIL weights .*mismatches=1/6", show fsi)
    Assert.That(out, Does.Contain "at (1, 0): got", show fsi)

/// README's one C# block (section "From F# and C#").
let private readmeCSharp () =
    let readme = File.ReadAllText(Repo.path [ "README.md" ])

    let blocks =
        Regex.Matches(readme, @"^```csharp\n(.*?)^```", RegexOptions.Multiline ||| RegexOptions.Singleline)

    Assert.That(blocks.Count, Is.EqualTo 1, "README has exactly one ```csharp block, the snippet this test compiles")
    blocks[0].Groups[1].Value

let ``README's C# snippet compiles against the libraries and reports the perturbed weight`` () =
    let tmp, cleanup = tempDir "reference-csharp-"
    use _ = cleanup
    File.WriteAllText(Path.Combine(tmp, "Program.cs"), readmeCSharp ())

    let refs =
        [ "Reference"; "Reference.Kernels"; "Reference.Harness"; "System.Numerics.Tensors" ]
        |> List.map (fun n -> $"""    <Reference Include="{n}" HintPath="{Path.Combine(binDir, n + ".dll")}" />""")
        |> String.concat "\n"

    File.WriteAllText(
        Path.Combine(tmp, "Snippet.csproj"),
        $"""<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
  </PropertyGroup>
  <ItemGroup>
{refs}
  </ItemGroup>
</Project>
"""
    )
    // No package sources: the snippet needs none, and restore must not reach for the network.
    File.WriteAllText(
        Path.Combine(tmp, "nuget.config"),
        """<?xml version="1.0" encoding="utf-8"?>
<configuration><packageSources><clear /></packageSources></configuration>
"""
    )

    let built = run "dotnet" [ "build"; "-c"; "Release"; "-nologo"; "-v"; "quiet"; "-o"; "out" ] [] tmp
    let code, _, _ = built
    Assert.That(code, Is.EqualTo 0, $"README's C# snippet does not build\n{show built}")
    let ran = run "dotnet" [ Path.Combine(tmp, "out", "Snippet.dll") ] [] tmp
    let code, out, _ = ran
    // The snippet perturbs weights[1, 0] by 1%: experts pass, weights fail there, and it returns 1.
    Assert.That(code, Is.EqualTo 1, show ran)
    Assert.That(out, Does.Match @"(?m)^PASS experts ", show ran)
    Assert.That(out, Does.Match @"(?m)^FAIL weights .*mismatches=1/6", show ran)
    Assert.That(out, Does.Contain "at (1, 0): got", show ran)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "client"
        "ClientTests"
        [
            Proofs.sequenced (
                Proofs.test
                    []
                    "the Python client installs with pip and passes its pytest suite with torch candidates"
                    ``the Python client installs with pip and passes its pytest suite with torch candidates``
            )
            Proofs.sequenced (
                Proofs.test
                    []
                    "dotnet pack makes the reference tool, which installs into a tool path, lists and checks"
                    ``dotnet pack makes the reference tool, which installs into a tool path, lists and checks``
            )
            Proofs.sequenced (
                Proofs.test
                    []
                    "the F# script routes with a reference and checks candidates in memory"
                    ``the F# script routes with a reference and checks candidates in memory``
            )
            Proofs.sequenced (
                Proofs.test
                    []
                    "README's C# snippet compiles against the libraries and reports the perturbed weight"
                    ``README's C# snippet compiles against the libraries and reports the perturbed weight``
            )
        ]
