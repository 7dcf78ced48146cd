/// The torch paths of the attention algorithms (proofs/torch.md, Theorems: attention): each passes check against the
/// reference on its algorithm's generated cases, judged by the algorithm's own validator and tolerance policies, and
/// the semantics SDPA gets wrong by default (alignment when Tq != Tk, windows, empty rows, GQA, half precision) are
/// pinned by targeted cases.
module Reference.Tests.TorchAttentionProperties

open System
open System.Collections.Generic
open NUnit.Framework
open Reference.Harness
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Numerics
open Reference.Tests.Assertions

/// The torch path's outputs on a generated case pass check; the attention paths declare no Supports, so every case
/// must run (a Supports added later that skips cases fails here instead of passing silently).
let private runsAndPasses (algorithm: string) (seed: int) =
    let ran = TorchPathProperties.passesOnGeneratedCase algorithm seed
    Assert.That(ran, $"{algorithm} torch skipped generated case {seed}")

let ``torch attention passes check against the reference`` (seed: int) = runsAndPasses "attention" seed

let ``torch block-sparse passes check against the reference`` (seed: int) = runsAndPasses "block-sparse" seed

let ``torch moba passes check against the reference`` (seed: int) = runsAndPasses "moba" seed

let ``torch linear passes check against the reference`` (seed: int) = runsAndPasses "linear" seed

/// Uniform values in [-2, 2) of a dtype (rounded to it).
let private randomArray (rng: Random) (dtype: DType) (shape: int[]) =
    let n = Array.fold (*) 1 shape
    let draw () = rng.NextDouble() * 4.0 - 2.0

    match dtype with
    | DType.F16 -> NdArray.Create(Array.init n (fun _ -> Half.op_Explicit (draw ())), shape)
    | DType.BF16 -> NdArray.Create(Array.init n (fun _ -> BFloat16.FromDouble(draw ())), shape)
    | _ -> NdArray.Create(Array.init n (fun _ -> float32 (draw ())), shape)

let private qkv (seed: int) (dtype: DType) (b, hq, hkv, tq, tk, d, dv) =
    let rng = Random seed

    Dictionary<string, NdArray>(
        dict
            [
                "q", randomArray rng dtype [| b; hq; tq; d |]
                "k", randomArray rng dtype [| b; hkv; tk; d |]
                "v", randomArray rng dtype [| b; hkv; tk; dv |]
            ]
    )

/// Binds the call, runs the torch path, checks it against the reference (every report must pass) and returns its outputs.
let private runChecked (algorithm: string) (inputs: Dictionary<string, NdArray>) (parameters: (string * string) list) =
    let a, path = TorchPathProperties.torchPath algorithm
    let call = a.Bind(inputs, parameters |> List.map KeyValuePair, "test")
    let reports = SelfCheck.CheckPath(a, path, call)
    Assert.That(reports.Count, Is.GreaterThan 0)

    for r in reports do
        Assert.That(r.Passed, $"{algorithm} torch: {r.Summary()}")

    a.Run(call, path.Name)

let private at (a: NdArray) (index: int list) =
    let flat = List.fold2 (fun acc i n -> acc * n + i) 0 index (List.ofSeq a.Shape)
    a.GetDouble(int64 flat)

let ``causal attention with Tq != Tk follows causal_align in the torch path`` () =
    // Tq = 5 queries, Tk = 3 keys. Bottom-right: p_i = i - 2, so rows 0 and 1 are empty and row 2 sees key 0 only.
    // Top-left (SDPA's is_causal): p_i = i, so row 0 sees key 0 only and rows 2.. see every key.
    let inputs = qkv 11 DType.F32 (1, 2, 2, 5, 3, 4, 3)
    let v = inputs.["v"]
    let bottom = runChecked "attention" inputs [ "causal", "true" ]

    for h in 0..1 do
        for i in 0..1 do
            Assert.That(at bottom.["lse"] [ 0; h; i ], eq Double.NegativeInfinity)

            for e in 0..2 do
                Assert.That(at bottom.["out"] [ 0; h; i; e ], eq 0.0)

        for e in 0..2 do
            Assert.That(at bottom.["out"] [ 0; h; 2; e ], Is.EqualTo(at v [ 0; h; 0; e ]).Within 1e-6)

    let top = runChecked "attention" inputs [ "causal", "true"; "causal_align", "top-left" ]

    for h in 0..1 do
        Assert.That(Double.IsFinite(at top.["lse"] [ 0; h; 0 ]))

        for e in 0..2 do
            Assert.That(at top.["out"] [ 0; h; 0; e ], Is.EqualTo(at v [ 0; h; 0; e ]).Within 1e-6)

    // The two alignments differ on the last rows too: bottom-right row 4 sees keys 0..2, as top-left row 4 does, but
    // top-left row 2 sees all 3 keys where bottom-right row 2 sees one.
    Assert.That(at top.["out"] [ 0; 0; 2; 0 ], Is.Not.EqualTo(at bottom.["out"] [ 0; 0; 2; 0 ]))

let ``a sliding window of one key gives each row its own value in the torch path`` () =
    // window (0, 0) allows only j = p_i = i (Tq = Tk); a window (2, 1) with causal is checked against the reference.
    let inputs = qkv 12 DType.F32 (2, 2, 1, 9, 9, 8, 4)
    let own = runChecked "attention" inputs [ "window_left", "0"; "window_right", "0" ]
    let v = inputs.["v"]

    for b in 0..1 do
        for h in 0..1 do
            for i in 0..8 do
                for e in 0..3 do
                    Assert.That(at own.["out"] [ b; h; i; e ], Is.EqualTo(at v [ b; 0; i; e ]).Within 1e-6)

    runChecked "attention" inputs [ "window_left", "2"; "window_right", "1"; "causal", "true" ]
    |> ignore

    runChecked "attention" inputs [ "window_left", "3"; "window_right", "-1"; "causal_align", "top-left" ]
    |> ignore

let ``rows without an allowed key give 0 and -Inf, not NaN, in the torch path`` () =
    // An all-false mask row (row 1), and a window outside the keys for every row (window_left 0, window_right 0 with
    // Tq > Tk puts the first rows before key 0): SDPA would return NaN there.
    let inputs = qkv 13 DType.F32 (1, 2, 2, 4, 4, 4, 3)
    let mask = Array.init 16 (fun n -> n / 4 <> 1 && n % 3 <> 2)
    inputs.["mask"] <- NdArray.Create(mask, 1, 1, 4, 4)

    for parameters in [ []; [ "softcap", "5.0" ]; [ "scale", "0.3" ] ] do
        let out = runChecked "attention" inputs parameters

        for h in 0..1 do
            Assert.That(at out.["lse"] [ 0; h; 1 ], eq Double.NegativeInfinity)

            for e in 0..2 do
                Assert.That(at out.["out"] [ 0; h; 1; e ], eq 0.0)

        for x in out.["out"].ToDoubles() do
            Assert.That(Double.IsNaN x, Is.False)

    let shifted = qkv 14 DType.F32 (1, 1, 1, 6, 2, 4, 3)
    let out = runChecked "attention" shifted [ "window_left", "0"; "window_right", "0" ]

    for i in 0..3 do
        Assert.That(at out.["lse"] [ 0; 0; i ], eq Double.NegativeInfinity)

let ``GQA in the torch path equals MHA with the kv heads repeated in place`` () =
    // Hq = 6, Hkv = 2: query heads 0..2 read kv head 0 and 3..5 kv head 1 (repeat_interleave, not h mod Hkv).
    let gqa = qkv 15 DType.F32 (1, 6, 2, 7, 9, 4, 3)
    let grouped = runChecked "attention" gqa [ "causal", "true" ]

    let repeat (a: NdArray) =
        let s = a.Shape
        let x = a.ToDoubles()
        let per = s.[2] * s.[3]

        let y =
            Array.init (s.[0] * 6 * per) (fun n ->
                let h = (n / per) % 6
                let b = n / (6 * per)
                float32 x.[(b * s.[1] + h / 3) * per + n % per])

        NdArray.Create(y, s.[0], 6, s.[2], s.[3])

    let mha =
        Dictionary<string, NdArray>(dict [ "q", gqa.["q"]; "k", repeat gqa.["k"]; "v", repeat gqa.["v"] ])

    let full = runChecked "attention" mha [ "causal", "true" ]
    Assert.That(grouped.["out"].ToDoubles(), eq (full.["out"].ToDoubles()))
    Assert.That(grouped.["lse"].ToDoubles(), eq (full.["lse"].ToDoubles()))

let ``float16 and bfloat16 inputs run in their dtype and pass in that precision`` () =
    // out carries the inputs' precision (SDPA, or the eager weights, in half precision), lse float32 as FlashAttention
    // returns it; both pass check, each judged in its own precision. The larger case goes through libtorch's
    // optimized CPU kernels.
    for dtype, format in [ DType.F16, NumberFormat.Float16; DType.BF16, NumberFormat.BFloat16 ] do
        for dims, parameters in
            [
                (1, 4, 2, 13, 17, 8, 8), [ "causal", "true" ]
                (1, 4, 2, 13, 17, 8, 8), [ "softcap", "4.0" ]
                (1, 2, 1, 160, 160, 64, 64), [ "causal", "true" ]
            ] do
            let inputs = qkv 16 dtype dims
            let out = runChecked "attention" inputs parameters
            Assert.That(Formats.Effective out.["out"], eq format, $"{dtype} {parameters}")
            Assert.That(Formats.Effective out.["lse"], eq NumberFormat.Float32, $"{dtype} {parameters}")

    // MoBA takes bfloat16 inputs the same way.
    let inputs = qkv 17 DType.BF16 (1, 2, 2, 31, 31, 8, 4)
    let out = runChecked "moba" inputs [ "chunk_size", "4"; "top_k", "3" ]
    Assert.That(Formats.Effective out.["out"], eq NumberFormat.BFloat16)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "torch/attention"
        "TorchAttentionProperties"
        [
            Proofs.prop
                [ "torch.attention-passes-check" ]
                "torch attention passes check against the reference"
                ``torch attention passes check against the reference``
            Proofs.prop
                [ "torch.block-sparse-passes-check" ]
                "torch block-sparse passes check against the reference"
                ``torch block-sparse passes check against the reference``
            Proofs.prop
                [ "torch.moba-passes-check" ]
                "torch moba passes check against the reference"
                ``torch moba passes check against the reference``
            Proofs.prop
                [ "torch.linear-passes-check" ]
                "torch linear passes check against the reference"
                ``torch linear passes check against the reference``
            Proofs.test
                [ "torch.attention-passes-check" ]
                "causal attention with Tq != Tk follows causal_align in the torch path"
                ``causal attention with Tq != Tk follows causal_align in the torch path``
            Proofs.test
                [ "torch.attention-passes-check" ]
                "a sliding window of one key gives each row its own value in the torch path"
                ``a sliding window of one key gives each row its own value in the torch path``
            Proofs.test
                [ "torch.attention-passes-check" ]
                "rows without an allowed key give 0 and -Inf, not NaN, in the torch path"
                ``rows without an allowed key give 0 and -Inf, not NaN, in the torch path``
            Proofs.test
                [ "torch.attention-passes-check" ]
                "GQA in the torch path equals MHA with the kv heads repeated in place"
                ``GQA in the torch path equals MHA with the kv heads repeated in place``
            Proofs.test
                [ "torch.attention-passes-check"; "torch.moba-passes-check" ]
                "float16 and bfloat16 inputs run in their dtype and pass in that precision"
                ``float16 and bfloat16 inputs run in their dtype and pass in that precision``
        ]
