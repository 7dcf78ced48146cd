/// The suite's Expecto conventions, and the link from property tests to the theorems in proofs/ that they check.
/// Tests are values: every file ends with `let tests = Proofs.family "routing/topk" "TopKProperties" [ ... ]`.
/// A test names the theorems it checks
/// (`Proofs.prop [ "topk.ties" ] "name" fn`); every theorem in proofs/*.md lists its tests, as "Module.test name",
/// in a line that starts with "**Tests:**". ProofsLinkage.fs enumerates the test tree and checks both directions.
module Reference.Tests.Proofs

open System
open System.Collections.Generic
open System.Globalization
open System.Text.RegularExpressions
open Expecto

let private inCi () = String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

/// The fixed seed under CI=true: the same start as the NUnit suite's Replay "(20261122,1)" (seed, gamma), no size.
let ciSeed = (20261122UL, 1UL, None)

/// Parses "(seed,gamma)" or "(seed,gamma,size)", as printed in the replay hint (a "UL" suffix is allowed).
let parseReplay (text: string) =
    let m =
        Regex.Match(text.Trim(), @"^\(?\s*(\d+)(?:UL)?\s*,\s*(\d+)(?:UL)?\s*(?:,\s*(?:Some\s*)?(\d+)\s*)?\)?$")

    if not m.Success then
        failwithf "FSCHECK_REPLAY=%s: expected \"(seed,gamma)\" or \"(seed,gamma,size)\"" text

    let u (g: Group) = UInt64.Parse(g.Value, CultureInfo.InvariantCulture)

    let size =
        if m.Groups.[3].Success then
            Some(Int32.Parse(m.Groups.[3].Value, CultureInfo.InvariantCulture))
        else
            None

    (u m.Groups.[1], u m.Groups.[2], size)

/// The seed a property run uses: FSCHECK_REPLAY if set, the fixed one in CI, a fresh one otherwise.
let replay =
    match Environment.GetEnvironmentVariable "FSCHECK_REPLAY" with
    | null
    | "" -> if inCi () then Some ciSeed else None
    | s -> Some(parseReplay s)

/// The project's property settings: 200 cases, sizes 1..100 (FsCheck's defaults), the replay seed above.
let config =
    { FsCheckConfig.defaultConfig with maxTest = 200; startSize = 1; endSize = 100; replay = replay }

/// What the linkage check needs to know about a test made by the helpers below.
type Meta =
    {
        Name: string
        Theorems: string list
        IsProperty: bool
        /// "Module.test name", the form proofs/*.md uses; set by `family`.
        mutable Linkage: string option
    }

let private registry = Dictionary<TestCode, Meta>(HashIdentity.Reference)

let private register (meta: Meta) (test: Test) =
    let rec codes t =
        match t with
        | TestLabel(_, inner, _) -> codes inner
        | TestCase(code, _) -> [ code ]
        | TestList(ts, _) -> List.collect codes ts
        | Test.Sequenced(_, inner) -> codes inner

    lock registry (fun () ->
        for c in codes test do
            registry.[c] <- meta)

    test

/// The metadata of a test made by the helpers below, if it was.
let metaOf (code: TestCode) =
    lock registry (fun () ->
        match registry.TryGetValue code with
        | true, m -> Some m
        | _ -> None)

/// A test (unit -> unit) that checks the given theorems (often none).
let private isolated (body: unit -> unit) () =
    // A fresh NUnit context per test: a failed Assert.That reports its own failure, not those of earlier tests.
    use _ = new NUnit.Framework.Internal.TestExecutionContext.IsolatedContext()
    body ()

let test (theorems: string list) (name: string) (body: unit -> unit) =
    testCase name (isolated body)
    |> register { Name = name; Theorems = theorems; IsProperty = false; Linkage = None }

/// A property with the project's settings (200 cases, the replay seed) that checks the given theorems.
let prop (theorems: string list) (name: string) (property: 'a) =
    testPropertyWithConfig config name property
    |> register { Name = name; Theorems = theorems; IsProperty = true; Linkage = None }

/// A property with more cases than the default 200.
let propN (maxTest: int) (theorems: string list) (name: string) (property: 'a) =
    testPropertyWithConfig { config with maxTest = max 200 maxTest } name property
    |> register { Name = name; Theorems = theorems; IsProperty = true; Linkage = None }

/// A parametrized test: one test per row, named "name(args)" as NUnit named its TestCase rows.
let cases (theorems: string list) (name: string) (rows: (string * (unit -> unit)) list) =
    let meta = { Name = name; Theorems = theorems; IsProperty = false; Linkage = None }
    TestList([ for args, body in rows -> testCase $"{name}({args})" (isolated body) |> register meta ], FocusState.Normal)

let private show (x: obj) =
    match x with
    | :? string as s -> "\"" + s + "\""
    | null -> "null"
    | x -> String.Format(CultureInfo.InvariantCulture, "{0}", x)

/// A test per element of a source (NUnit's TestCaseSource), named "name(element)".
let caseSource (theorems: string list) (name: string) (source: seq<'a>) (body: 'a -> unit) =
    cases theorems name [ for x in source -> show (box x), (fun () -> body x) ]

/// Runs the test alone, after the parallel ones: for tests that run peers or the CLI heavily or touch shared files.
let sequenced (test: Test) = testSequenced test

let private focusRx =
    Regex(@"etestPropertyWithConfig\s*\((\d+)UL,\s*(\d+)UL,\s*(?:Some\s*\(?(\d+)\)?|None)\)", RegexOptions.Compiled)

/// The command that replays a failed property, from the "Focus on error" line of Expecto.FsCheck's message.
let replayCommand (fullName: string) (message: string) =
    let m = focusRx.Match message

    if not m.Success then
        None
    else
        let size =
            if m.Groups.[3].Success then
                "," + m.Groups.[3].Value
            else
                ""

        let escaped = fullName.Replace("\\", "\\\\").Replace("\"", "\\\"")

        Some
            $"FSCHECK_REPLAY=\"({m.Groups.[1].Value},{m.Groups.[2].Value}{size})\" dotnet run --project tests/Reference.Tests -c Release --no-build -- --filter \"{escaped}\""

let private withReplayHint (fullName: string) (run: FsCheckConfig -> Async<unit>) =
    fun (cfg: FsCheckConfig) ->
        async {
            // NUnit records every failed Assert.That of a context in its message: a fresh context per run keeps one
            // property's failures out of another's (within a run, the message lists the failures met while shrinking).
            use _ = new NUnit.Framework.Internal.TestExecutionContext.IsolatedContext()

            let hint (message: string) =
                replayCommand fullName message
                |> Option.map (fun c -> $"{message}\nReplay this failure with:\n  {c}")

            try
                return! run cfg
            with
            | :? FailedException as e when (hint e.Message).IsSome -> return raise (FailedException((hint e.Message).Value))
            | :? AssertException as e when (hint e.Message).IsSome -> return raise (AssertException((hint e.Message).Value))
        }

/// A family of tests mirroring src/ ("routing/topk"), holding one test module's tests: tests are named
/// "family.Module.test name". Properties print, on failure, the exact command that replays them.
let family (name: string) (moduleName: string) (tests: Test list) =
    let rec walk (path: string list) (t: Test) =
        match t with
        | TestLabel(label, inner, state) -> TestLabel(label, walk (path @ [ label ]) inner, state)
        | TestList(ts, state) -> TestList(ts |> List.map (walk path), state)
        | Test.Sequenced(how, inner) -> Test.Sequenced(how, walk path inner)
        | TestCase(code, state) ->
            let wrapped =
                match code with
                | AsyncFsCheck(c1, c2, run) -> AsyncFsCheck(c1, c2, withReplayHint (String.Join(".", path)) run)
                | other -> other

            lock registry (fun () ->
                match registry.TryGetValue code with
                | true, meta ->
                    meta.Linkage <- Some $"{moduleName}.{meta.Name}"
                    registry.Remove code |> ignore
                    registry.[wrapped] <- meta
                | _ -> ())

            TestCase(wrapped, state)

    testList name [ testList moduleName tests ] |> walk []
