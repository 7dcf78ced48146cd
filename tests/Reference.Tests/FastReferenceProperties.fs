/// The fast double-precision paths that `check` uses beyond a documented size (proofs/cli.md, "Fast references beyond a
/// size"): each is equal bit for bit to its readable reference on random shapes, masks, GQA, windows and ties, and
/// `check` gives the same reports below and beyond the threshold, for a correct candidate and a broken one.
module Reference.Tests.FastReferenceProperties

open System
open System.Collections.Generic
open Expecto
open Reference.Attention
open Reference.Routing
open Reference.Numerics
open Reference.Harness.Algorithms
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Proofs

let private normal (r: Random) = sqrt (-2.0 * log (1.0 - r.NextDouble())) * cos (2.0 * Math.PI * r.NextDouble())

/// Bitwise equality of two double sequences (NaN never occurs here; -0 and +0 differ).
let private sameBits (what: string) (a: double seq) (b: double seq) =
    let a = Array.ofSeq a
    let b = Array.ofSeq b
    Expect.equal a.Length b.Length $"{what}: lengths"

    for n in 0 .. a.Length - 1 do
        if BitConverter.DoubleToInt64Bits a.[n] <> BitConverter.DoubleToInt64Bits b.[n] then
            failwithf "%s[%d]: %.17g vs %.17g" what n a.[n] b.[n]

let private flat4 (x: double[,,,]) = Seq.cast<double> x
let private flat3 (x: double[,,]) = Seq.cast<double> x

/// A random attention problem: awkward sizes, GQA, entries of random magnitude (rounded to float16 half the time, so
/// that scores tie), and random options: causal, alignment, windows, scale, softcap, a broadcast mask.
let private problem (seed: int) =
    let r = Random seed
    let b = r.Next(1, 3)
    let hkv = r.Next(1, 4)
    let hq = hkv * r.Next(1, 4)
    let tq = r.Next(1, 41)
    let tk = r.Next(0, 45)
    let d = r.Next(1, 21)
    let dv = r.Next(1, 22)
    let magnitude = [| 0.1; 1.0; 4.0 |].[r.Next 3]
    let coarse = r.Next 2 = 0

    let arr n0 n1 n2 n3 =
        Array4D.init n0 n1 n2 n3 (fun _ _ _ _ ->
            let x = magnitude * normal r
            if coarse then float (Half.op_Explicit x: Half) else x)

    let q = arr b hq tq d
    let k = arr b hkv tk d
    let v = arr b hkv tk dv
    let window () = if r.Next 2 = 0 then -1 else r.Next(0, 6)

    let mask =
        if r.Next 3 = 0 then
            let dim full = if r.Next 2 = 0 then 1 else full
            let m0, m1, m2, m3 = dim b, dim hq, dim tq, dim (max 1 tk)
            let m3 = if tk = 0 then 1 else m3
            Some(Array4D.init m0 m1 m2 m3 (fun _ _ _ _ -> r.Next 4 <> 0))
        else
            None

    let options =
        AttentionOptions(
            Causal = (r.Next 2 = 0),
            CausalAlign =
                (if r.Next 2 = 0 then
                     CausalAlignment.BottomRight
                 else
                     CausalAlignment.TopLeft),
            WindowLeft = window (),
            WindowRight = window (),
            Scale = (if r.Next 3 = 0 then Nullable(normal r) else Nullable()),
            Softcap = (if r.Next 3 = 0 then 0.5 + 5.0 * r.NextDouble() else 0.0),
            Mask = Option.toObj mask
        )

    q, k, v, options

let ``fast dense attention equals the readable reference bit for bit`` (seed: int) =
    let q, k, v, options = problem seed
    let slow = DenseAttention.Compute(q, k, v, options)
    let fast = DenseAttentionFast.Compute(q, k, v, options)
    sameBits "out" (flat4 slow.Out) (flat4 fast.Out)
    sameBits "lse" (flat3 slow.Lse) (flat3 fast.Lse)

let ``fast dense attention rejects what the reference rejects`` () =
    let q = Array4D.create 1 2 3 4 1.0
    let k = Array4D.create 1 2 3 4 1.0
    let v = Array4D.create 1 2 3 5 1.0
    k.[0, 1, 2, 3] <- Double.NaN
    let opts = AttentionOptions()

    let message (f: unit -> AttentionResult) =
        try
            f () |> ignore
            "no error"
        with :? ArgumentException as e ->
            e.Message

    let slow = message (fun () -> DenseAttention.Compute(q, k, v, opts))
    Expect.stringContains slow "k[0, 1, 2, 3]" "the reference names the index"
    Expect.equal (message (fun () -> DenseAttentionFast.Compute(q, k, v, opts))) slow "same error"
    k.[0, 1, 2, 3] <- 0.0
    let bad = AttentionOptions(WindowLeft = -2)

    Expect.equal
        (message (fun () -> DenseAttentionFast.Compute(q, k, v, bad)))
        (message (fun () -> DenseAttention.Compute(q, k, v, bad)))
        "same error"

/// Row keys with kinds 0, 1 and 2 at random (LeanK-like alternative keys), fixed by the seed and the row.
let private randomKinds (seed: int) : AttentionRowKeys =
    AttentionRowKeys(fun b h i (kinds: Span<byte>) ->
        let r = Random(HashCode.Combine(seed, b, h, i))
        let empty = r.Next 8 = 0

        for j in 0 .. kinds.Length - 1 do
            kinds.[j] <- if empty then 0uy else byte (r.Next 3))

let ``fast baseline equals both naive orders bit for bit`` (seed: int) =
    let q, k, v, options = problem seed
    let r = Random(seed + 1)
    let format = [| NumberFormat.Float32; NumberFormat.Float16; NumberFormat.BFloat16 |].[r.Next 3]

    let scale =
        if options.Scale.HasValue then
            options.Scale.Value
        else
            1.0 / sqrt (float (Array4D.length4 q))

    let tq, tk = Array4D.length3 q, Array4D.length3 k

    let rows, alt =
        if r.Next 2 = 0 then
            AttentionBaseline.DenseRows(options, tq, tk), null
        else
            randomKinds seed,
            Array4D.init (Array4D.length1 k) (Array4D.length2 k) tk (Array4D.length4 k) (fun a b c d -> 0.5 * k.[a, b, c, d])

    let struct (fast0, fast1) =
        AttentionBaselineFast.ComputeBoth(q, k, v, scale, options.Softcap, rows, alt, format)

    for order, f in [ 0, fast0; 1, fast1 ] do
        let struct (o, l, m) = f

        let struct (so, sl, sm) =
            AttentionBaseline.Compute(q, k, v, scale, options.Softcap, rows, alt, format, order)

        sameBits $"order {order} out" so o
        sameBits $"order {order} lse" sl l
        sameBits $"order {order} magnitude" sm m

/// Logits with ties: a coarse grid half the time, so that many scores in a column are equal.
let private logits (seed: int) =
    let r = Random seed
    let n = r.Next(1, 200)
    let e = r.Next(1, 12)
    let grid = r.Next 2 = 0
    Array2D.init n e (fun _ _ -> if grid then float (r.Next 4) else 2.0 * normal r), r

let ``fast expert choice equals the readable reference`` (seed: int) =
    let x, r = logits seed
    let n, e = Array2D.length1 x, Array2D.length2 x

    let options =
        if r.Next 2 = 0 then
            ExpertChoiceOptions(Capacity = Nullable(r.Next(0, n + 1)))
        else
            ExpertChoiceOptions(CapacityFactor = 0.25 + 2.0 * r.NextDouble(), K = r.Next(1, 4))

    let slow = ExpertChoice.Route(x, options)
    let fast = ExpertChoiceFast.Route(x, options)
    Expect.equal fast.Capacity slow.Capacity "C"
    Expect.equal (Seq.cast<int> fast.Tokens |> Array.ofSeq) (Seq.cast<int> slow.Tokens |> Array.ofSeq) "tokens"
    sameBits "gates" (Seq.cast<double> slow.Gates) (Seq.cast<double> fast.Gates)
    Expect.equal fast.Count slow.Count "count"

// ---------------------------------------------------------------------------------------------------------------
// check below and beyond the threshold

let private bind (name: string) (arrays: (string * NdArray) list) (parameters: (string * string) list) =
    let alg = AlgorithmRegistry.Find name
    alg, alg.Bind(dict arrays |> Dictionary, parameters |> List.map KeyValuePair, "test")

/// The reports of check as text lines (summary and detail), without and with every threshold lowered to -1.
let private bothWays (name: string) arrays parameters (candidate: IReadOnlyDictionary<string, NdArray> -> Dictionary<string, NdArray>) =
    let run () =
        let alg, call = bind name arrays parameters
        let expected = alg.RunOracle call

        alg.Check(call, expected, candidate expected, "candidate")
        |> Seq.map (fun r -> r.Passed, r.Summary() + " " + string r.Detail)
        |> List.ofSeq

    let below = run ()

    let beyond =
        use _ = FastReference.Lowered -1L
        run ()

    below, beyond

let private attentionArrays (seed: int) =
    let r = Random seed

    let arr (shape: int[]) = NdArray.Create(Array.init (Array.fold (*) 1 shape) (fun _ -> float32 (normal r)), shape)

    [ "q", arr [| 1; 4; 23; 16 |]; "k", arr [| 1; 2; 29; 16 |]; "v", arr [| 1; 2; 29; 8 |] ]

let ``attention check gives the same reports below and beyond the threshold`` () =
    let arrays = attentionArrays 3
    let parameters = [ "causal", "true"; "window_left", "9" ]
    let alg, call = bind "attention" arrays parameters
    let kernel = alg.Run(call, "kernel")
    let good (_: IReadOnlyDictionary<string, NdArray>) = Dictionary kernel

    let broken (_: IReadOnlyDictionary<string, NdArray>) =
        let out = kernel.["out"].ToDoubles() |> Array.map float32
        out.[5] <- out.[5] + 1e-3f
        Dictionary(dict [ "out", NdArray.Create(out, Array.ofSeq kernel.["out"].Shape); "lse", kernel.["lse"] ])

    for label, candidate, passes in [ "kernel", good, true; "broken", broken, false ] do
        let below, beyond = bothWays "attention" arrays parameters candidate
        Expect.equal beyond below $"{label}: same reports"
        Expect.equal (below |> List.forall fst) passes $"{label}: verdict {below}"

let ``expert choice check gives the same reports below and beyond the threshold`` () =
    let r = Random 11
    let n, e = 150, 6
    let x = Array2D.init n e (fun _ _ -> float (r.Next 4))
    let arrays = [ "logits", NdArray.Create(Seq.cast<double> x |> Seq.map float32 |> Array.ofSeq, n, e) ]
    let parameters = [ "capacity_factor", "1.5"; "k", "2" ]
    let alg, call = bind "expert-choice" arrays parameters
    let kernel = alg.Run(call, "kernel")
    let good (_: IReadOnlyDictionary<string, NdArray>) = Dictionary kernel

    let broken (_: IReadOnlyDictionary<string, NdArray>) =
        let tokens = kernel.["tokens"].ToDoubles() |> Array.map int
        // The first expert's best token replaced by its worst-ranked one: a wrong routing.
        let c = tokens.Length / e

        if c >= 2 then
            let t = tokens.[0]
            tokens.[0] <- tokens.[c - 1]
            tokens.[c - 1] <- t

        Dictionary(dict [ "tokens", NdArray.Create(tokens, e, c); "gates", kernel.["gates"]; "count", kernel.["count"] ])

    for label, candidate, passes in [ "kernel", good, true; "broken", broken, false ] do
        let below, beyond = bothWays "expert-choice" arrays parameters candidate
        Expect.equal beyond below $"{label}: same reports"
        Expect.equal (below |> List.forall fst) passes $"{label}: verdict {below}"

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Tests>]
let tests =
    Proofs.family
        "fast-reference"
        "FastReferenceProperties"
        [
            Proofs.prop
                [ "attention.fast-reference-identical" ]
                "fast dense attention equals the readable reference bit for bit"
                ``fast dense attention equals the readable reference bit for bit``
            Proofs.test
                [ "attention.fast-reference-identical" ]
                "fast dense attention rejects what the reference rejects"
                ``fast dense attention rejects what the reference rejects``
            Proofs.prop
                [ "attention.fast-baseline-identical" ]
                "fast baseline equals both naive orders bit for bit"
                ``fast baseline equals both naive orders bit for bit``
            Proofs.prop
                [ "expert-choice.fast-reference-identical" ]
                "fast expert choice equals the readable reference"
                ``fast expert choice equals the readable reference``
            Proofs.test
                [ "attention.fast-reference-identical"; "attention.fast-baseline-identical" ]
                "attention check gives the same reports below and beyond the threshold"
                ``attention check gives the same reports below and beyond the threshold``
            Proofs.test
                [ "expert-choice.fast-reference-identical" ]
                "expert choice check gives the same reports below and beyond the threshold"
                ``expert choice check gives the same reports below and beyond the threshold``
        ]
