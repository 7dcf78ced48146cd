/// The routing suite through the `reference` command: run with the kernel path, check a kernel candidate (exit 0) and a
/// tampered one (exit 1), and a missing required parameter (exit 2).
module Reference.Tests.RoutingCliTests

open System
open System.IO
open NUnit.Framework
open Reference.Harness.Tensors

let private temp () =
    let d = Path.Combine(Path.GetTempPath(), "routing-cli-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private write path (arrays: (string * NdArray) list) =
    TensorFile.Write(path, arrays |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)))

/// Logits [12, 5] float32 on a grid of 1/2: exact ties within rows, and several tokens competing for each expert.
let private logits = Array2D.init 12 5 (fun i j -> float32 (((i * 7 + j * 3) % 5) - 2) * 0.5f)

/// Runs `reference run` with the kernel path and returns the outputs.
let private runKernel d algorithm (parameters: string list) =
    let input, output = Path.Combine(d, "in.npz"), Path.Combine(d, "kernel.npz")
    write input [ "logits", NdArray.FromMatrix logits ]

    let args =
        [ "run"; algorithm; "--input"; input; "--output"; output; "--path"; "kernel" ]
        @ (parameters |> List.collect (fun p -> [ "--param"; p ]))

    let code, _, err = CliTests.cli args
    Assert.That(code, eq 0, err)
    input, TensorFile.Read output

let private check algorithm input (parameters: string list) (candidate: (string * NdArray) list) d =
    let cand = Path.Combine(d, "cand.npz")
    write cand candidate

    let code, out, err =
        CliTests.cli (
            [ "check"; algorithm; "--input"; input; "--candidate"; cand ]
            @ (parameters |> List.collect (fun p -> [ "--param"; p ]))
        )

    code, out + err

let ``check capacity passes the kernel and fails a re-admitted request`` () =
    let d = temp ()
    let parameters = [ "k=2"; "policy=score"; "normalize=after"; "capacity_factor=0.75" ]
    let input, k = runKernel d "capacity" parameters
    let all = [ for name in [ "experts"; "weights"; "slots"; "load" ] -> name, k.[name] ]
    let code, text = check "capacity" input parameters all d
    Assert.That(code, eq 0, text)
    // Re-admit the first dropped request at its selected expert (the reference's selection), which is full.
    let experts = k.["experts"].Values<int>() |> Array.copy

    let options =
        Reference.Routing.CapacityOptions(
            K = 2,
            Policy = Reference.Routing.DropPolicy.Score,
            Normalize = Reference.Routing.Renormalization.After,
            CapacityFactor = 0.75
        )

    let reference = Reference.Routing.Capacity.Route(Array2D.map float logits, options)
    let dropped = experts |> Array.findIndex (fun v -> v < 0)
    experts.[dropped] <- reference.Selected.[dropped / 2, dropped % 2]
    let code, text = check "capacity" input parameters [ "experts", NdArray.Create(experts, 12, 2) ] d
    Assert.That(code, eq 1, text)
    Assert.That(text, Does.Contain "FAIL experts")

let ``check aux-loss passes the kernel and fails a loss off by 1e-3`` () =
    let d = temp ()
    let parameters = [ "k=2"; "variant=megatron" ]
    let input, k = runKernel d "aux-loss" parameters

    let code, text =
        check "aux-loss" input parameters [ "switch_loss", k.["switch_loss"]; "z_loss", k.["z_loss"] ] d

    Assert.That(code, eq 0, text)
    let off = NdArray.Scalar(k.["switch_loss"].Values<float32>().[0] + 1e-3f)
    let code, text = check "aux-loss" input parameters [ "switch_loss", off ] d
    Assert.That(code, eq 1, text)

let ``block-routing without block_size is bad usage`` () =
    let d = temp ()
    let input = Path.Combine(d, "in.npz")
    write input [ "logits", NdArray.FromMatrix logits ]

    let code, _, err =
        CliTests.cli [ "run"; "block-routing"; "--input"; input; "--output"; Path.Combine(d, "o.npz") ]

    Assert.That(code, eq 2)
    Assert.That(err, Does.Contain "block_size")

let ``list names the routing suite`` () =
    let code, out, _ = CliTests.cli [ "list" ]
    Assert.That(code, eq 0)

    for name in [ "capacity"; "reroute"; "expert-choice"; "aux-loss"; "block-routing" ] do
        Assert.That(out, Does.Contain(name + ":"))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "cli/routing"
        "RoutingCliTests"
        [
            Proofs.test
                []
                "check capacity passes the kernel and fails a re-admitted request"
                ``check capacity passes the kernel and fails a re-admitted request``
            Proofs.test
                []
                "check aux-loss passes the kernel and fails a loss off by 1e-3"
                ``check aux-loss passes the kernel and fails a loss off by 1e-3``
            Proofs.test [] "block-routing without block_size is bad usage" ``block-routing without block_size is bad usage``
            Proofs.test [] "list names the routing suite" ``list names the routing suite``
        ]
