/// Keeps proofs/ and the property tests in step (see Proofs.fs for the conventions).
module Reference.Tests.ProofsLinkage

open System
open System.IO
open System.Reflection
open System.Text.RegularExpressions
open NUnit.Framework
open FsCheck.NUnit
open Reference.Tests.Proofs

type TheoremEntry = { Id: string; File: string; Tests: string list }

let private headingRx = Regex(@"^#{2,4}\s+Theorem\s+([a-z0-9-]+(?:\.[a-z0-9-]+)+)\b", RegexOptions.Compiled)
let private testsRx = Regex(@"^\*\*Tests:\*\*(.*)$", RegexOptions.Compiled)
let private tickRx = Regex(@"`([^`]+)`", RegexOptions.Compiled)

/// Every theorem in proofs/*.md with the tests its "**Tests:**" lines name.
let theorems () =
    [ for file in Directory.GetFiles(Repo.path [ "proofs" ], "*.md") |> Array.sort do
        let mutable current : TheoremEntry option = None
        let entries = ResizeArray()
        for line in File.ReadAllLines file do
            let h = headingRx.Match line
            let t = testsRx.Match line
            if h.Success then
                current |> Option.iter entries.Add
                current <- Some { Id = h.Groups.[1].Value; File = Path.GetFileName file; Tests = [] }
            elif t.Success then
                match current with
                | Some c ->
                    let names = [ for m in tickRx.Matches t.Groups.[1].Value -> m.Groups.[1].Value ]
                    current <- Some { c with Tests = c.Tests @ names }
                | None -> failwithf "%s: a **Tests:** line before any theorem" file
            elif line.StartsWith "#" then
                // Any other heading ends the current theorem.
                current |> Option.iter entries.Add
                current <- None
        current |> Option.iter entries.Add
        yield! entries ]

/// Every test method in this assembly, by "Module.method name", with its theorem ids and whether it is a property.
let tests () =
    [ for t in Assembly.GetExecutingAssembly().GetTypes() do
        for m in t.GetMethods(BindingFlags.Public ||| BindingFlags.Static ||| BindingFlags.Instance ||| BindingFlags.DeclaredOnly) do
            let isProperty = m.GetCustomAttributes(typeof<PropertyAttribute>, true).Length > 0
            let isTest = isProperty || m.GetCustomAttributes(typeof<TestAttribute>, true).Length > 0
                         || m.GetCustomAttributes(typeof<TestCaseAttribute>, true).Length > 0
                         || m.GetCustomAttributes(typeof<TestCaseSourceAttribute>, true).Length > 0
            if isTest then
                let ids = [ for a in m.GetCustomAttributes(typeof<TheoremAttribute>, true) -> (a :?> TheoremAttribute).Id ]
                yield (t.Name + "." + m.Name), isProperty, ids ]

[<Test>]
let ``proofs directory has theorems`` () =
    Assert.That(theorems (), Is.Not.Empty)

[<Test>]
let ``theorem ids are unique`` () =
    let dups = theorems () |> List.countBy _.Id |> List.filter (fun (_, n) -> n > 1) |> List.map fst
    Assert.That(dups, Is.Empty, "theorem ids defined twice")

[<Test>]
let ``every property test names a theorem that exists`` () =
    let known = theorems () |> List.map _.Id |> Set.ofList
    let problems =
        [ for name, isProperty, ids in tests () do
            if isProperty && List.isEmpty ids then yield $"{name}: a property test without [<Theorem>]"
            for id in ids do
                if not (known.Contains id) then yield $"{name}: names theorem {id}, which no proofs/*.md defines" ]
    Assert.That(problems, Is.Empty)

[<Test>]
let ``every theorem names tests that exist and check it`` () =
    let byName = tests () |> List.map (fun (n, _, ids) -> n, ids) |> Map.ofList
    let problems =
        [ for th in theorems () do
            if List.isEmpty th.Tests then yield $"{th.File}: theorem {th.Id} names no test"
            for test in th.Tests do
                match byName.TryFind test with
                | None -> yield $"{th.File}: theorem {th.Id} names test `{test}`, which does not exist"
                | Some ids when not (List.contains th.Id ids) ->
                    yield $"{th.File}: theorem {th.Id} names `{test}`, but that test does not carry [<Theorem \"{th.Id}\">]"
                | Some _ -> () ]
    Assert.That(problems, Is.Empty)

[<Test>]
let ``every test that claims a theorem is listed under it`` () =
    let listed = theorems () |> List.collect (fun th -> th.Tests |> List.map (fun t -> th.Id, t)) |> Set.ofList
    let problems =
        [ for name, _, ids in tests () do
            for id in ids do
                if not (listed.Contains(id, name)) then yield $"{name} claims {id}, but proofs/ does not list it there" ]
    Assert.That(problems, Is.Empty)

[<Test>]
let ``every property runs at least 200 cases`` () =
    let weak =
        [ for t in Assembly.GetExecutingAssembly().GetTypes() do
            for m in t.GetMethods(BindingFlags.Public ||| BindingFlags.Static ||| BindingFlags.Instance ||| BindingFlags.DeclaredOnly) do
                for a in m.GetCustomAttributes(typeof<PropertyAttribute>, true) do
                    let p = a :?> PropertyAttribute
                    if p.MaxTest < 200 then yield $"{t.Name}.{m.Name}: MaxTest = {p.MaxTest}" ]
    Assert.That(weak, Is.Empty)
