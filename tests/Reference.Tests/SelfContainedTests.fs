/// The repository is its own contract: nothing it ships cites a document outside it, every citation of a definition in
/// proofs/ names a file and a section that exist, and the README's timing table is the table of the benchmark records
/// in data/bench/.
module Reference.Tests.SelfContainedTests

open System
open System.IO
open System.Text.RegularExpressions
open NUnit.Framework
open Reference.Harness.Bench

/// Text files the repository ships: sources, tests, proofs, scripts, project files, README (not build outputs).
let private shippedTextFiles () =
    let skipDirs =
        set [ "bin"; "obj"; "paket-files"; ".git"; "packages"; "node_modules"; "__pycache__"; ".test-results" ]

    let textExts =
        set
            [
                ".cs"
                ".fs"
                ".fsx"
                ".md"
                ".py"
                ".sh"
                ".json"
                ".csproj"
                ".fsproj"
                ".props"
                ".txt"
                ".cpp"
                ".h"
                ".hpp"
                ".toml"
                ".cfg"
            ]

    let rec walk (dir: string) =
        seq {
            for f in Directory.GetFiles dir do
                let name = Path.GetFileName f

                if
                    textExts.Contains(Path.GetExtension f)
                    || name = "CMakeLists.txt"
                    || name = "run"
                    || name = "MANIFEST"
                then
                    yield f

            for d in Directory.GetDirectories dir do
                if not (skipDirs.Contains(Path.GetFileName d)) then
                    yield! walk d
        }

    [
        for top in [ "src"; "tests"; "proofs"; "native"; "data"; ".ci" ] do
            let d = Repo.path [ top ]

            if Directory.Exists d then
                yield! walk d
        yield Repo.path [ "README.md" ]
        yield Repo.path [ "build.sh" ]
        yield Repo.path [ "paket.dependencies" ]
    ]

let private relative (f: string) = Path.GetRelativePath(Repo.root, f).Replace('\\', '/')

/// Documents that live beside the repository on the machine it was started on, not in a clone. Built from parts so
/// that this file does not cite them itself.
let private outsideDocuments =
    [ "SEMANTICS" + ".md"; "DESIGN" + ".md"; "STYLE" + ".md"; "../" + "shared"; "/work/" + "shared" ]

let ``no shipped file cites a document outside the repository`` () =
    let offenders =
        [
            for f in shippedTextFiles () do
                let lines = File.ReadAllLines f

                for i in 0 .. lines.Length - 1 do
                    for doc in outsideDocuments do
                        if lines[i].Contains(doc, StringComparison.Ordinal) then
                            yield $"{relative f}:{i + 1}: cites {doc}"
        ]

    Assert.That(offenders, Is.Empty, String.Join("\n", offenders |> List.truncate 40))

/// The `### ` headings inside a proofs file's `## Definition` section.
let private definitionSections (proofFile: string) =
    let lines = File.ReadAllLines proofFile
    let start = lines |> Array.tryFindIndex (fun l -> l.Trim() = "## Definition")

    match start with
    | None -> []
    | Some s ->
        lines
        |> Array.skip (s + 1)
        |> Array.takeWhile (fun l -> not (l.StartsWith("## ", StringComparison.Ordinal)))
        |> Array.filter (fun l -> l.StartsWith("### ", StringComparison.Ordinal))
        |> Array.map (fun l -> l.Substring(4).Trim())
        |> List.ofArray

let private citation =
    Regex(@"proofs/([A-Za-z0-9_-]+\.md)(?:,\s*Definition(?::\s*(?<section>[^\r\n]*))?)?", RegexOptions.Compiled)

let ``every citation of proofs names a file and a definition section that exist`` () =
    let problems =
        [
            for f in shippedTextFiles () do
                let lines = File.ReadAllLines f

                for i in 0 .. lines.Length - 1 do
                    for m in citation.Matches lines[i] do
                        let target = Repo.path [ "proofs"; m.Groups[1].Value ]

                        if not (File.Exists target) then
                            yield $"{relative f}:{i + 1}: proofs/{m.Groups[1].Value} does not exist"
                        elif m.Value.Contains("Definition", StringComparison.Ordinal) then
                            let sections = definitionSections target

                            if
                                List.isEmpty sections
                                && not (File.ReadAllLines target |> Array.exists (fun l -> l.Trim() = "## Definition"))
                            then
                                yield $"{relative f}:{i + 1}: proofs/{m.Groups[1].Value} has no '## Definition' section"
                            elif m.Groups["section"].Success then
                                let cited = m.Groups["section"].Value

                                if not (sections |> List.exists (fun s -> cited.StartsWith(s, StringComparison.Ordinal))) then
                                    yield
                                        $"{relative f}:{i + 1}: proofs/{m.Groups[1].Value} has no Definition section that '{cited}' starts with (sections: {String.Join(Char.ToString '|', sections)})"
        ]

    Assert.That(problems, Is.Empty, String.Join("\n", problems |> List.truncate 40))

let ``every family's proofs file opens with a Definition section`` () =
    let missing =
        [
            for f in Directory.GetFiles(Repo.path [ "proofs" ], "*.md") do
                let lines = File.ReadAllLines f
                let firstH2 = lines |> Array.tryFind (fun l -> l.StartsWith("## ", StringComparison.Ordinal))

                if firstH2 |> Option.map (fun l -> l.Trim()) <> Some "## Definition" then
                    yield relative f
        ]

    Assert.That(missing, Is.Empty, "proofs files whose first section is not '## Definition'")

let ``the README's timing table is the table of the records in data/bench`` () =
    let records =
        Directory.GetFiles(Repo.path [ "data"; "bench" ], "*.json")
        |> Array.sort
        |> Array.map BenchRecord.Read

    Assert.That(records, Is.Not.Empty, "data/bench holds no benchmark record")
    let readme = File.ReadAllText(Repo.path [ "README.md" ]).Replace("\r\n", "\n")
    let startMarker, endMarker = "<!-- bench-table: begin -->\n", "<!-- bench-table: end -->"
    let s = readme.IndexOf(startMarker, StringComparison.Ordinal)
    let e = readme.IndexOf(endMarker, StringComparison.Ordinal)
    Assert.That((s >= 0 && e > s), "README has no bench-table markers")
    let shown = readme.Substring(s + startMarker.Length, e - s - startMarker.Length)

    Assert.That(
        shown,
        Is.EqualTo(BenchRecord.Table records),
        "README's table differs from `reference bench table data/bench/*.json`; paste that output between the markers"
    )

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "repository"
        "SelfContainedTests"
        [
            Proofs.test
                []
                "no shipped file cites a document outside the repository"
                ``no shipped file cites a document outside the repository``
            Proofs.test
                []
                "every citation of proofs names a file and a definition section that exist"
                ``every citation of proofs names a file and a definition section that exist``
            Proofs.test
                []
                "every family's proofs file opens with a Definition section"
                ``every family's proofs file opens with a Definition section``
            Proofs.test
                []
                "the README's timing table is the table of the records in data/bench"
                ``the README's timing table is the table of the records in data/bench``
        ]
