/// Keeps proofs/ and the property tests in step (see Proofs.fs for the conventions): enumerates the test tree.
module Reference.Tests.ProofsLinkage

open System
open System.IO
open System.Reflection
open Expecto
open System.Text.RegularExpressions
open NUnit.Framework
open Reference.Tests.Proofs

type TheoremEntry = { Id: string; File: string; Tests: string list }

let private headingRx =
    Regex(@"^#{2,4}\s+Theorem\s+([a-z0-9-]+(?:\.[a-z0-9-]+)+)\b", RegexOptions.Compiled)

let private testsRx = Regex(@"^\*\*Tests:\*\*(.*)$", RegexOptions.Compiled)
let private tickRx = Regex(@"`([^`]+)`", RegexOptions.Compiled)

/// Every theorem in proofs/*.md with the tests its "**Tests:**" lines name.
let theorems () =
    [
        for file in Directory.GetFiles(Repo.path [ "proofs" ], "*.md") |> Array.sort do
            let mutable current: TheoremEntry option = None
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
            yield! entries
    ]

/// Every test in this assembly's tree (the [<Tests>] values), by "Module.test name" (the form proofs/*.md uses),
/// with whether it is a property, its theorem ids and, for a property, its FsCheck configuration.
let tests () =
    let tree =
        Impl.testFromAssembly (Assembly.GetExecutingAssembly())
        |> Option.defaultValue (TestList([], Normal))

    [
        for t in Test.toTestCodeList tree do
            let config =
                match t.test with
                | AsyncFsCheck(c, _, _) -> Some c
                | _ -> None

            let isPropertyCode = config.IsSome

            match Proofs.metaOf t.test with
            | Some m ->
                let name = m.Linkage |> Option.defaultValue (String.Join(".", t.name))

                yield
                    {|
                        Name = name
                        Registered = m.Linkage.IsSome
                        IsProperty = m.IsProperty || isPropertyCode
                        Theorems = m.Theorems
                        Config = config |> Option.flatten
                        FullName = String.Join(".", t.name)
                    |}
            | None ->
                let n = t.name |> List.rev

                let name =
                    match n with
                    | last :: m :: _ -> m + "." + last
                    | _ -> String.Join(".", t.name)

                yield
                    {|
                        Name = name
                        Registered = false
                        IsProperty = isPropertyCode
                        Theorems = []
                        Config = config |> Option.flatten
                        FullName = String.Join(".", t.name)
                    |}
    ]

let ``proofs directory has theorems`` () = Assert.That(theorems (), Is.Not.Empty)

let ``theorem ids are unique`` () =
    let dups = theorems () |> List.countBy _.Id |> List.filter (fun (_, n) -> n > 1) |> List.map fst
    Assert.That(dups, Is.Empty, "theorem ids defined twice")

let ``the test tree is found and every test is placed in a family`` () =
    let all = tests ()
    Assert.That(all.Length, Is.GreaterThan 100, "the [<Tests>] values of this assembly")
    // Only the Proofs helpers inside Proofs.family give a test the "Module.test name" that proofs/*.md uses.
    let loose =
        [
            for t in all do
                if not t.Registered then
                    yield $"{t.FullName}: not made by Proofs.test/prop/cases inside Proofs.family"
        ]

    Assert.That(loose, Is.Empty)

let ``every property test names a theorem that exists`` () =
    let known = theorems () |> List.map _.Id |> Set.ofList

    let problems =
        [
            for t in tests () do
                if t.IsProperty && List.isEmpty t.Theorems then
                    yield $"{t.Name}: a property test that names no theorem"

                for id in t.Theorems do
                    if not (known.Contains id) then
                        yield $"{t.Name}: names theorem {id}, which no proofs/*.md defines"
        ]

    Assert.That(problems, Is.Empty)

let ``every theorem names tests that exist and check it`` () =
    let byName =
        tests ()
        |> List.groupBy _.Name
        |> List.map (fun (n, ts) -> n, ts |> List.collect _.Theorems)
        |> Map.ofList

    let problems =
        [
            for th in theorems () do
                if List.isEmpty th.Tests then
                    yield $"{th.File}: theorem {th.Id} names no test"

                for test in th.Tests do
                    match byName.TryFind test with
                    | None -> yield $"{th.File}: theorem {th.Id} names test `{test}`, which does not exist"
                    | Some ids when not (List.contains th.Id ids) ->
                        yield $"{th.File}: theorem {th.Id} names `{test}`, but that test does not name \"{th.Id}\""
                    | Some _ -> ()
        ]

    Assert.That(problems, Is.Empty)

let ``every test that claims a theorem is listed under it`` () =
    let listed =
        theorems () |> List.collect (fun th -> th.Tests |> List.map (fun t -> th.Id, t)) |> Set.ofList

    let problems =
        [
            for t in tests () do
                for id in t.Theorems do
                    if not (listed.Contains(id, t.Name)) then
                        yield $"{t.Name} claims {id}, but proofs/ does not list it there"
        ]

    Assert.That(problems |> List.distinct, Is.Empty)

let ``every property runs at least 200 cases`` () =
    let all = tests ()
    Assert.That(all |> List.filter _.IsProperty, Is.Not.Empty)

    let weak =
        [
            for t in all do
                if t.IsProperty then
                    match t.Config with
                    | Some c when c.maxTest >= 200 -> ()
                    | Some c -> yield $"{t.FullName}: maxTest = {c.maxTest}"
                    | None -> yield $"{t.FullName}: no FsCheck configuration (Expecto's default is 100 cases); use Proofs.prop"
        ]

    Assert.That(weak, Is.Empty)

let ``a failed property prints the command that replays it`` () =
    let message = "Focus on error:\n\tetestPropertyWithConfig (123UL, 457UL, Some 7) \"p\""

    Assert.That(
        Proofs.replayCommand "routing/topk.TopKProperties.p" message,
        Is.EqualTo(
            Some
                "FSCHECK_REPLAY=\"(123,457,7)\" dotnet run --project tests/Reference.Tests -c Release --no-build -- --filter \"routing/topk.TopKProperties.p\""
        )
    )

    Assert.That(Proofs.parseReplay "(123,457,7)", Is.EqualTo((123UL, 457UL, Some 7)))
    Assert.That(Proofs.parseReplay "(20261122,1)", Is.EqualTo Proofs.ciSeed)

/// Runs a property test value the way Expecto does and returns its failure message (None if it passed).
let private runProperty (t: Test) (replay: (uint64 * uint64 * int option) option) =
    match Test.toTestCodeList t |> List.ofSeq with
    | [ { test = AsyncFsCheck(Some c, _, run) } ] ->
        try
            run { c with replay = replay } |> Async.RunSynchronously
            None
        with :? ExpectoException as e ->
            Some e.Message
    | other -> failwithf "expected one property, got %d tests" other.Length

let ``a failed property prints a command that replays the same counterexample`` () =
    let failing =
        Proofs.family "demo" "Demo" [ Proofs.prop [] "every int is below 40" (fun (n: int) -> Assert.That(n, Is.LessThan 40)) ]

    let message = runProperty failing None
    Assert.That(message.IsSome, "the property must fail")

    let m =
        Regex.Match(
            message.Value,
            "FSCHECK_REPLAY=\"(\\([^\"]+\\))\" dotnet run --project tests/Reference.Tests -c Release --no-build -- --filter \"demo.Demo.every int is below 40\""
        )

    Assert.That(m.Success, $"no replay command in:\n{message.Value}")
    let counterexample (msg: string) = Regex.Match(msg, @"But was:\s+(-?\d+)").Groups.[1].Value
    let again = runProperty failing (Some(Proofs.parseReplay m.Groups.[1].Value))
    Assert.That(again.IsSome, "the replay must fail too")
    Assert.That(counterexample again.Value, Is.EqualTo(counterexample message.Value).And.Not.Empty)

[<Tests>]
let tests' =
    Proofs.family
        "proofs"
        "ProofsLinkage"
        [
            Proofs.test [] "proofs directory has theorems" ``proofs directory has theorems``
            Proofs.test [] "theorem ids are unique" ``theorem ids are unique``
            Proofs.test
                []
                "the test tree is found and every test is placed in a family"
                ``the test tree is found and every test is placed in a family``
            Proofs.test [] "every property test names a theorem that exists" ``every property test names a theorem that exists``
            Proofs.test [] "every theorem names tests that exist and check it" ``every theorem names tests that exist and check it``
            Proofs.test [] "every test that claims a theorem is listed under it" ``every test that claims a theorem is listed under it``
            Proofs.test [] "every property runs at least 200 cases" ``every property runs at least 200 cases``
            Proofs.test [] "a failed property prints the command that replays it" ``a failed property prints the command that replays it``
            Proofs.test
                []
                "a failed property prints a command that replays the same counterexample"
                ``a failed property prints a command that replays the same counterexample``
        ]
