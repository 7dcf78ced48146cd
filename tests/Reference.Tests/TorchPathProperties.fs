/// The torch path (proofs/torch.md): TorchSharp loads here, and every torch path passes check against the reference on
/// generated cases, judged by the same validators and tolerance policies as any candidate.
module Reference.Tests.TorchPathProperties

open System
open System.Diagnostics
open NUnit.Framework
open Reference.Harness
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Assertions

let private eq (x: obj) = Is.EqualTo x

/// The torch path of an algorithm (registered by Main.fs, as the `reference` command registers it).
let torchPath (algorithm: string) =
    let a = AlgorithmRegistry.Find algorithm
    let path = a.Paths |> Seq.tryFind (fun p -> p.Name = Reference.Torch.TorchPaths.Name)
    Assert.That(path.IsSome, $"{algorithm} has no torch path; paths: {String.Join(',', a.PathNames)}")
    a, path.Value

/// The torch path's outputs on the generated case `seed` pass check against the reference; a case the path does not
/// support (Supports) is not counted. Returns whether the case ran.
let passesOnGeneratedCase (algorithm: string) (seed: int) =
    let a, path = torchPath algorithm
    let case: GeneratedCase = a.Generate.Invoke seed
    let call = a.Bind(case.Inputs, case.Parameters, case.Name)

    if not (isNull path.Supports) && not (path.Supports.Invoke call) then
        false
    else
        let reports = SelfCheck.CheckPath(a, path, call)
        Assert.That(reports.Count, Is.GreaterThan 0, case.Name)

        for r in reports do
            Assert.That(r.Passed, $"{algorithm} torch, {case.Name}: {r.Summary()} {r.Problem} {r.Detail}")

        true

/// The dtype a routing property's case runs in, cycling with the seed: float32, float16, bfloat16 (a third each).
let dtypeOfSeed (seed: int) =
    match ((seed % 3) + 3) % 3 with
    | 0 -> DType.F32
    | 1 -> DType.F16
    | _ -> DType.BF16

/// A router input rounded to float16 or bfloat16 (the model's dtype), as a half-precision model hands it to the router;
/// float32 leaves it as it is. Values beyond float16's range become +-Inf, as a cast does.
let roundTo (dtype: DType) (x: NdArray) =
    let values = x.ToDoubles()
    let shape = Array.ofSeq x.Shape

    match dtype with
    | DType.F16 -> NdArray.Create(values |> Array.map (fun v -> (Half.op_Explicit v: Half)), shape)
    | DType.BF16 -> NdArray.Create(values |> Array.map Reference.Numerics.BFloat16.FromDouble, shape)
    | _ -> x

/// The router inputs a model produces in its own dtype (logits, a cost, SoftTopk's x); marginals and the selection bias
/// stay as they are (DeepSeek-V3 keeps its bias in float32).
let private routerInputs = set [ "logits"; "cost"; "x" ]

/// The torch path's outputs on the generated case `seed`, its router input rounded to `dtype`, pass check against the
/// reference (which reads the rounded input exactly); the float outputs the path returns in the input's dtype
/// (weights, gates, y, Jacobian) must have that dtype, so that check judges them at that precision. A case the path
/// does not support (Supports) is not counted. Returns whether the case ran.
let passesInDtype (algorithm: string) (dtype: DType) (seed: int) =
    let a, path = torchPath algorithm
    let case: GeneratedCase = a.Generate.Invoke seed

    let inputs =
        case.Inputs
        |> Seq.map (fun kv ->
            kv.Key,
            (if routerInputs.Contains kv.Key then
                 roundTo dtype kv.Value
             else
                 kv.Value))
        |> readOnlyDict

    let name = $"{case.Name} [{dtype}]"
    let call = a.Bind(inputs, case.Parameters, name)

    if not (isNull path.Supports) && not (path.Supports.Invoke call) then
        false
    else
        let reports = SelfCheck.CheckPath(a, path, call)
        Assert.That(reports.Count, Is.GreaterThan 0, name)

        for r in reports do
            Assert.That(r.Passed, $"{algorithm} torch, {name}: {r.Summary()} {r.Problem} {r.Detail}")

        let outputs = a.Run(call, path.Name)

        for output in [ "weights"; "gates"; "y"; "jacobian" ] do
            match outputs.TryGetValue output with
            | true, array when array.IsFloatingPoint -> Assert.That(array.DType, eq dtype, $"{name}: {output}")
            | _ -> ()

        true

let ``TorchSharp loads libtorch, and cuda is refused in one line where libtorch has none`` () =
    // The weak GLIBCXX_3.4.32 requirement (src/Reference.Torch/build) is what makes this load on Debian 12.
    let version = Reference.Torch.TorchDevice.LibTorchVersion
    Assert.That(version, Does.StartWith "2.")
    let t = TorchSharp.torch.arange (1.0, 5.0)
    Assert.That(t.sum().item<float32> (), eq 10.0f)

    if not (TorchSharp.torch.cuda.is_available ()) then
        let ex =
            Assert.Throws<InputException>(Action(fun () -> Reference.Torch.TorchDevice.For Devices.Cuda |> ignore))

        Assert.That(ex.Message, Does.Contain "--device cuda")
        Assert.That(ex.Message, Does.Contain "no CUDA")

let ``the copied native wrapper needs no libstdc++ version the system lacks`` () =
    // objdump -p lists each version requirement with its flags; a requirement the system's libstdc++ does not define
    // must carry the weak flag (0x02), or the loader refuses the library.
    let lib = IO.Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so")
    Assert.That(IO.File.Exists lib, lib)
    let system = IO.File.ReadAllText "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"

    let psi =
        ProcessStartInfo("objdump", $"-p \"{lib}\"", RedirectStandardOutput = true, UseShellExecute = false)

    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEnd()
    p.WaitForExit()
    Assert.That(p.ExitCode, eq 0)

    let requirements =
        out.Split('\n')
        |> Array.choose (fun line ->
            let parts = line.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)

            if parts.Length = 4 && parts.[3].StartsWith "GLIBCXX_" then
                Some(parts.[3], Convert.ToInt32(parts.[1], 16))
            else
                None)

    Assert.That(requirements, Is.Not.Empty, out)

    for version, flags in requirements do
        if not (system.Contains(version + "\000")) then
            Assert.That(flags &&& 2, eq 2, $"{version} is required (flags {flags}) but this system's libstdc++ lacks it")

let ``torch topk passes check against the reference, in float32, float16 and bfloat16`` (seed: int) =
    passesInDtype "topk" (dtypeOfSeed seed) seed |> ignore

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "torch"
        "TorchPathProperties"
        [
            Proofs.test
                [ "torch.loads" ]
                "TorchSharp loads libtorch, and cuda is refused in one line where libtorch has none"
                ``TorchSharp loads libtorch, and cuda is refused in one line where libtorch has none``
            Proofs.test
                [ "torch.loads" ]
                "the copied native wrapper needs no libstdc++ version the system lacks"
                ``the copied native wrapper needs no libstdc++ version the system lacks``
            Proofs.prop
                [ "torch.passes-check" ]
                "torch topk passes check against the reference, in float32, float16 and bfloat16"
                ``torch topk passes check against the reference, in float32, float16 and bfloat16``
        ]
