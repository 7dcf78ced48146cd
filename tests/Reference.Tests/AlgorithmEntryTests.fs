/// The typed registry entries: parameters declared against an options record, outputs against a result record, every
/// path's result checked against the declared kind and shape, options parsed once per call.
module Reference.Tests.AlgorithmEntryTests

open System
open System.Collections.Generic
open NUnit.Framework
open Reference.Harness.Registry
open Reference.Harness.Tensors

/// A toy algorithm: options (K, Scale, Mode), one input x [N,E], outputs y [N,k] (float) and index [N] (integer).
type ToyOptions = { K: int; Scale: float option; Mode: string }

type ToyOutput(y: NdArray, index: NdArray) =
    member _.Y = y
    member _.Index = index

let private entry (seedCount: int ref) (paths: (string * (AlgorithmCall -> ToyOptions -> ToyOutput)) list) =
    AlgorithmEntry<ToyOptions, ToyOutput>(
        Name = "toy",
        Summary = "a toy",
        Section = "none",
        Seed =
            Func<AlgorithmCall, ToyOptions>(fun _ ->
                seedCount.Value <- seedCount.Value + 1
                { K = 0; Scale = None; Mode = "" }),
        Parameters =
            [|
                Param<ToyOptions>.Int("k", "2", "k", fun o v -> { o with K = v })
                Param<ToyOptions>.OptionalDouble("scale", "scale", fun o v -> { o with Scale = Option.ofNullable v })
                Param<ToyOptions>
                    .Choice("mode", "a", "mode", [| struct ("a", "first"); struct ("b", "second") |], fun o v -> { o with Mode = v })
            |],
        Inputs = [| InputSpec("x", "N,E", ArrayKind.Float, false, "x") |],
        Outputs =
            [|
                OutputSpec<ToyOutput>.Of("y", "N,k", ArrayKind.Float, OutputComparison.Tolerance, "y", fun r -> r.Y)
                OutputSpec<ToyOutput>.Of("index", "N", ArrayKind.Integer, OutputComparison.Exact, "index", fun r -> r.Index)
            |],
        Reference = Func<AlgorithmCall, ToyOptions, ToyOutput>(fun call o -> (snd paths.Head) call o),
        Paths =
            (paths.Tail
             |> List.map (fun (name, run) -> PathOf<ToyOptions, ToyOutput>(name, name, fun call o -> run call o))
             |> Array.ofList),
        Generate = Func<int, GeneratedCase>(fun _ -> raise (NotSupportedException()))
    )

let private bind (algorithm: Algorithm) (n: int) (parameters: (string * string) list) =
    let inputs = Dictionary<string, NdArray>()
    inputs["x"] <- NdArray.Create(Array.zeroCreate<float> (n * 3), n, 3)
    algorithm.Bind(inputs, parameters |> List.map (fun (k, v) -> KeyValuePair(k, v)), "toy.npz")

/// A path that returns y [N,k] and index [N] as declared.
let private good (call: AlgorithmCall) (o: ToyOptions) =
    let n = call.Array("x").Shape[0]
    ToyOutput(NdArray.Create(Array.zeroCreate<float32> (n * o.K), n, o.K), NdArray.Create(Array.zeroCreate<int> n, n))

let ``parameters are declared once: specs for list and CLI, values mapped onto the options`` () =
    let seeds = ref 0
    let mutable seen = None

    let e =
        entry
            seeds
            [
                "reference",
                (fun call o ->
                    seen <- Some o
                    good call o)
            ]

    let algorithm = e.ToAlgorithm()
    Assert.That(algorithm.Parameters |> Seq.map (fun p -> p.Name) |> List.ofSeq, Is.EqualTo(box [ "k"; "scale"; "mode" ]))
    Assert.That(algorithm.Parameters[2].Choices |> List.ofSeq, Is.EqualTo(box [ "a"; "b" ]))
    let call = bind algorithm 4 [ "k", "3"; "mode", "b"; "scale", "0.5" ]
    algorithm.RunReference call |> ignore
    Assert.That(seen, Is.EqualTo(Some { K = 3; Scale = Some 0.5; Mode = "second" }))

let ``options are built once per call, whatever reads them`` () =
    let seeds = ref 0
    let e = entry seeds [ "reference", good; "kernel", good ]
    let algorithm = e.ToAlgorithm()
    let call = bind algorithm 4 []
    algorithm.RunReference call |> ignore
    algorithm.Run(call, "kernel") |> ignore
    Assert.That(e.Options(call).K, Is.EqualTo 2)
    Assert.That(seeds.Value, Is.EqualTo 1)
    let other = bind algorithm 4 []
    algorithm.RunReference other |> ignore
    Assert.That(seeds.Value, Is.EqualTo 2)

let ``a path's outputs come out in declaration order with their own dtypes`` () =
    let algorithm = (entry (ref 0) [ "reference", good ]).ToAlgorithm()
    let outputs = algorithm.RunReference(bind algorithm 5 [ "k", "4" ])
    Assert.That(outputs.Keys |> List.ofSeq, Is.EqualTo(box [ "y"; "index" ]))
    Assert.That(outputs["y"].DType, Is.EqualTo DType.F32)
    Assert.That(outputs["y"].Shape |> List.ofSeq, Is.EqualTo(box [ 5; 4 ]))

let ``a path whose output breaks the declared shape or kind is stopped`` () =
    let wrongShape (call: AlgorithmCall) (o: ToyOptions) =
        let n = call.Array("x").Shape[0]
        ToyOutput(NdArray.Create(Array.zeroCreate<float> (n * (o.K + 1)), n, o.K + 1), NdArray.Create(Array.zeroCreate<int> n, n))

    let wrongKind (call: AlgorithmCall) (o: ToyOptions) =
        let n = call.Array("x").Shape[0]
        ToyOutput(NdArray.Create(Array.zeroCreate<float> (n * o.K), n, o.K), NdArray.Create(Array.zeroCreate<float> n, n))

    let algorithm =
        (entry (ref 0) [ "reference", good; "shape", wrongShape; "kind", wrongKind ]).ToAlgorithm()

    let call = bind algorithm 3 []
    Assert.That(algorithm.Run(call, "reference").Count, Is.EqualTo 2)

    let shape =
        Assert.Throws<InvalidOperationException>(Action(fun () -> algorithm.Run(call, "shape") |> ignore))

    Assert.That(shape.Message, Does.Contain("output 'y' has shape (3, 3) but is declared [N,k] (N=3, k=2)"))

    let kind =
        Assert.Throws<InvalidOperationException>(Action(fun () -> algorithm.Run(call, "kind") |> ignore))

    Assert.That(kind.Message, Does.Contain("output 'index' has dtype F64 but is declared integer"))

let ``a path that runs out of memory or fails natively is bad input with one line, not a crash`` () =
    let outOfMemory (_: AlgorithmCall) (_: ToyOptions) : ToyOutput =
        raise (OutOfMemoryException "Insufficient memory to continue the execution of the program.")

    let native (_: AlgorithmCall) (_: ToyOptions) : ToyOutput =
        raise (
            Runtime.InteropServices.ExternalException(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory\nframe #0: c10::ThrowEnforceNotMet"
            )
        )

    let algorithm =
        (entry (ref 0) [ "reference", good; "oom", outOfMemory; "native", native ]).ToAlgorithm()

    let call = bind algorithm 3 []

    for path, expected in
        [
            "oom", "toy.npz: toy could not run this input here (OutOfMemoryException: Insufficient memory"
            "native", "toy.npz: toy could not run this input here (ExternalException: [enforce fail at alloc_cpu.cpp:127]"
        ] do
        let error = Assert.Throws<InputException>(Action(fun () -> algorithm.Run(call, path) |> ignore))
        Assert.That(error.Message, Does.StartWith expected)
        Assert.That(error.Message, Does.Not.Contain "\n", "one line")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "harness/registry"
        "AlgorithmEntryTests"
        [
            Proofs.test
                []
                "parameters are declared once: specs for list and CLI, values mapped onto the options"
                ``parameters are declared once: specs for list and CLI, values mapped onto the options``
            Proofs.test [] "options are built once per call, whatever reads them" ``options are built once per call, whatever reads them``
            Proofs.test
                []
                "a path's outputs come out in declaration order with their own dtypes"
                ``a path's outputs come out in declaration order with their own dtypes``
            Proofs.test
                []
                "a path whose output breaks the declared shape or kind is stopped"
                ``a path whose output breaks the declared shape or kind is stopped``
            Proofs.test
                []
                "a path that runs out of memory or fails natively is bad input with one line, not a crash"
                ``a path that runs out of memory or fails natively is bad input with one line, not a crash``
        ]
