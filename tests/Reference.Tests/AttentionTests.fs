/// Properties of the attention references (dense, block-sparse, fixed patterns) and of the float32 FlashAttention
/// kernel against them. Theorems and the error bound used as tolerance: proofs/attention.md.
module Reference.Tests.AttentionTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Attention
open Reference.Kernels.Attention
open Reference.Numerics
open Reference.Tests.Proofs

// ---------------------------------------------------------------------------------------------------------------
// Inputs: a small spec (printed by FsCheck on failure, replayable) from which the arrays are drawn.
// ---------------------------------------------------------------------------------------------------------------

/// How entries are drawn: uniform in [-2, 2]; from {-1, 0, 1} (exact ties among scores); uniform in [-20, 20]
/// (sharp softmax, many probabilities underflow). Every value is a float32, so the kernel sees the same inputs.
type Values =
    | Uniform
    | Ties
    | Sharp

type Spec = { B: int; Hq: int; Hkv: int; Tq: int; Tk: int; D: int; Dv: int; Values: Values; Seed: int }

type Inputs = { Q: float[,,,]; K: float[,,,]; V: float[,,,] }

let private lengths = [ 1; 2; 3; 4; 5; 7; 8; 9; 13 ]

let private specGen (groups: int list) (sameLength: bool) =
    gen {
        let! b = Gen.elements [ 1; 2 ]
        let! hkv = Gen.elements [ 1; 2 ]
        let! g = Gen.elements groups
        let! tq = Gen.elements lengths
        let! tk = if sameLength then Gen.constant tq else Gen.elements lengths
        let! d = Gen.elements [ 1; 2; 3; 4; 7; 8 ]
        let! dv = Gen.elements [ 1; 2; 3; 5 ]
        let! values = Gen.elements [ Uniform; Ties; Sharp ]
        let! seed = Gen.choose (0, 1_000_000_000)
        return { B = b; Hq = hkv * g; Hkv = hkv; Tq = tq; Tk = tk; D = d; Dv = dv; Values = values; Seed = seed }
    }

/// Multi-head self-attention shapes (Tq = Tk, Hq = Hkv).
let private mhaSpecs = specGen [ 1 ] true |> Arb.fromGen
/// Any shape: GQA groups 1..3, Tq and Tk independent.
let private anySpecs = specGen [ 1; 2; 3 ] false |> Arb.fromGen
/// Grouped heads only (group 2..4).
let private gqaSpecs = specGen [ 2; 3; 4 ] false |> Arb.fromGen
/// Tq different from Tk.
let private crossSpecs = specGen [ 1; 2 ] false |> Gen.filter (fun s -> s.Tq <> s.Tk) |> Arb.fromGen

let private draw (r: Random) values =
    match values with
    | Uniform -> float (float32 (r.NextDouble() * 4.0 - 2.0))
    | Ties -> float (r.Next(-1, 2))
    | Sharp -> float (float32 (r.NextDouble() * 40.0 - 20.0))

let inputsOf (s: Spec) =
    let r = Random s.Seed
    let t a b c d = Array4D.init a b c d (fun _ _ _ _ -> draw r s.Values)
    { Q = t s.B s.Hq s.Tq s.D; K = t s.B s.Hkv s.Tk s.D; V = t s.B s.Hkv s.Tk s.Dv }

let private ceilDiv a b = (a + b - 1) / b

/// Scale, softcap and tile sizes of one case, all float32 values so that reference and kernel get the same numbers.
type Knobs = { Scale: float32 option; Softcap: float32; BlockQ: int; BlockK: int }

let knobsOf (s: Spec) =
    let r = Random(s.Seed + 1)
    let tiles = [| 1; 2; 3; 4; 5; 16; 64 |]

    {
        Scale =
            (match r.Next 3 with
             | 0 -> None
             | 1 -> Some 0.5f
             | _ -> Some(float32 (r.NextDouble() * 2.0 - 1.0)))
        Softcap =
            (if r.Next 3 = 0 then
                 float32 (1.0 + 9.0 * r.NextDouble())
             else
                 0.0f)
        BlockQ = tiles.[r.Next tiles.Length]
        BlockK = tiles.[r.Next tiles.Length]
    }

let private effectiveScale (s: Spec) (k: Knobs) =
    match k.Scale with
    | Some x -> float x
    | None -> 1.0 / sqrt (float s.D)

/// A random mask of shape [1 or B, 1 or Hq, 1 or Tq, 1 or Tk] with random density, sometimes with an all-false row.
let randomMask (r: Random) (s: Spec) =
    let bm = if r.Next 2 = 0 then 1 else s.B
    let hm = if r.Next 2 = 0 then 1 else s.Hq
    let tqm = if r.Next 8 = 0 then 1 else s.Tq
    let tkm = if r.Next 8 = 0 then 1 else s.Tk
    let density = r.NextDouble()
    let m = Array4D.init bm hm tqm tkm (fun _ _ _ _ -> r.NextDouble() < density)

    if r.Next 3 = 0 then
        let i = r.Next tqm

        for a in 0 .. bm - 1 do
            for h in 0 .. hm - 1 do
                for j in 0 .. tkm - 1 do
                    m.[a, h, i, j] <- false

    m

/// A random valid BlockMask: each tile absent, partial or full at random; the index entries past the counts are
/// garbage (possibly out of range), which the semantics say must be ignored.
let randomBlockMask (r: Random) (s: Spec) (bq: int) (bk: int) =
    let bm = if r.Next 2 = 0 then 1 else s.B
    let hm = if r.Next 2 = 0 then 1 else s.Hq
    let nq, nk = ceilDiv s.Tq bq, ceilDiv s.Tk bk
    let withFull = r.Next 4 <> 0
    let counts = Array3D.zeroCreate bm hm nq
    let indices = Array4D.init bm hm nq nk (fun _ _ _ _ -> r.Next(-3, nk + 3))
    let fullCounts = Array3D.zeroCreate bm hm nq
    let fullIndices = Array4D.init bm hm nq nk (fun _ _ _ _ -> r.Next(-3, nk + 3))

    for a in 0 .. bm - 1 do
        for h in 0 .. hm - 1 do
            for row in 0 .. nq - 1 do
                for c in 0 .. nk - 1 do
                    match r.Next 3 with
                    | 1 ->
                        indices.[a, h, row, counts.[a, h, row]] <- c
                        counts.[a, h, row] <- counts.[a, h, row] + 1
                    | 2 when withFull ->
                        fullIndices.[a, h, row, fullCounts.[a, h, row]] <- c
                        fullCounts.[a, h, row] <- fullCounts.[a, h, row] + 1
                    | _ -> ()

    if withFull then
        BlockMask(counts, indices, fullCounts, fullIndices, bq, bk, s.Tq, s.Tk)
    else
        BlockMask(counts, indices, null, null, bq, bk, s.Tq, s.Tk)

/// Every way of restricting the keys: causal, window, element mask, block mask (with an optional element mask).
type Masking = { Causal: bool; Left: int; Right: int; Mask: bool[,,,] option; Block: BlockMask option }

let unmasked = { Causal = false; Left = -1; Right = -1; Mask = None; Block = None }

let causalMasking (_: Random) (_: Spec) (_: Knobs) = { unmasked with Causal = true }

let windowMasking (r: Random) (s: Spec) (_: Knobs) =
    { unmasked with Causal = r.Next 3 = 0; Left = r.Next(-1, s.Tk + 1); Right = r.Next(-1, s.Tk + 1) }

let explicitMasking (r: Random) (s: Spec) (_: Knobs) = { unmasked with Mask = Some(randomMask r s) }

let blockMasking (r: Random) (s: Spec) (k: Knobs) =
    { unmasked with
        Block = Some(randomBlockMask r s k.BlockQ k.BlockK)
        Mask = (if r.Next 2 = 0 then None else Some(randomMask r s))
    }

/// One of the above, or none, chosen by the case's seed.
let anyMasking (r: Random) (s: Spec) (k: Knobs) =
    match r.Next 5 with
    | 0 -> unmasked
    | 1 -> causalMasking r s k
    | 2 -> windowMasking r s k
    | 3 -> explicitMasking r s k
    | _ -> blockMasking r s k

let private nullable (x: 'T option) : 'T =
    match x with
    | Some v -> v
    | None -> null

let referenceOptions (k: Knobs) (m: Masking) =
    let mask =
        match m.Block with
        | Some bm -> bm.ToDenseMask(nullable m.Mask) // the dense mask the block mask stands for
        | None -> nullable m.Mask

    AttentionOptions(
        Causal = m.Causal,
        WindowLeft = m.Left,
        WindowRight = m.Right,
        Scale = (k.Scale |> Option.map float |> Option.toNullable),
        Softcap = float k.Softcap,
        Mask = mask
    )

let kernelOptions (k: Knobs) (m: Masking) =
    FlashAttentionOptions(
        Causal = m.Causal,
        WindowLeft = m.Left,
        WindowRight = m.Right,
        Scale = Option.toNullable k.Scale,
        Softcap = k.Softcap,
        BlockQ = k.BlockQ,
        BlockK = k.BlockK,
        Mask = (m.Mask |> Option.map FlatMask.FromArray |> nullable),
        BlockMask = nullable m.Block
    )

// ---------------------------------------------------------------------------------------------------------------
// Conversions and comparison
// ---------------------------------------------------------------------------------------------------------------

let flat4 (x: float[,,,]) =
    [|
        for a in 0 .. Array4D.length1 x - 1 do
            for b in 0 .. Array4D.length2 x - 1 do
                for c in 0 .. Array4D.length3 x - 1 do
                    for d in 0 .. Array4D.length4 x - 1 do
                        yield x.[a, b, c, d]
    |]

let flat3 (x: float[,,]) =
    [|
        for a in 0 .. Array3D.length1 x - 1 do
            for b in 0 .. Array3D.length2 x - 1 do
                for c in 0 .. Array3D.length3 x - 1 do
                    yield x.[a, b, c]
    |]

let f32 (x: float[]) = Array.map float32 x
let f64 (x: float32[]) = Array.map float x

let shapeOf (x: Inputs) =
    AttentionShape(
        Array4D.length1 x.Q,
        Array4D.length2 x.Q,
        Array4D.length2 x.K,
        Array4D.length3 x.Q,
        Array4D.length3 x.K,
        Array4D.length4 x.Q,
        Array4D.length4 x.V
    )

let dense (x: Inputs) (o: AttentionOptions) = DenseAttention.Compute(x.Q, x.K, x.V, o)

let kernel (x: Inputs) (o: FlashAttentionOptions) = FlashAttention.Compute(f32 (flat4 x.Q), f32 (flat4 x.K), f32 (flat4 x.V), shapeOf x, o)

/// Fails with the mismatch count, the largest error and the first five mismatches at full precision.
/// -Infinity must match -Infinity exactly; NaN never matches.
let checkClose (what: string) (expected: float[]) (actual: float[]) (tolerance: float) =
    Assert.That(actual.Length, Is.EqualTo expected.Length, what + ": length")
    let bad = ResizeArray()
    let mutable largest = 0.0

    for n in 0 .. expected.Length - 1 do
        let e, a = expected.[n], actual.[n]

        let ok =
            if Double.IsInfinity e || Double.IsInfinity a then
                e = a
            else
                not (Double.IsNaN a) && abs (a - e) <= tolerance

        if not ok then
            bad.Add n

        if not (Double.IsInfinity e) && not (Double.IsNaN a) then
            largest <- max largest (abs (a - e))

    if bad.Count > 0 then
        let first =
            bad
            |> Seq.truncate 5
            |> Seq.map (fun n -> sprintf "[%d] got %.17g expected %.17g" n actual.[n] expected.[n])
            |> String.concat "; "

        Assert.Fail(
            sprintf
                "%s: %d of %d entries off by more than %.6g (largest error %.6g); first: %s"
                what
                bad.Count
                expected.Length
                tolerance
                largest
                first
        )

/// Runs f and returns the ArgumentException it must throw.
let throws (f: unit -> unit) = Assert.Throws<ArgumentException>(Action f)

let checkEqual what (expected: float[]) (actual: float[]) = checkClose what expected actual 0.0

// ---------------------------------------------------------------------------------------------------------------
// Tolerance: the forward error bound of proofs/attention.md (attention.kernel-matches-reference), one formula for
// float32 and for float64. Named here once; every comparison of two floating-point attention results uses it.
// ---------------------------------------------------------------------------------------------------------------

/// A working precision: its unit roundoff u and the assumed accuracy of exp, log and tanh in units of u.
/// 4 is a generous allowance: MathF/TensorPrimitives float32 functions and Math double functions are within 1-2 ulp.
type Precision = { U: float; FunctionUlps: float }

let float32Precision = { U = 2.0 ** -24.0; FunctionUlps = 4.0 }
let float64Precision = { U = 2.0 ** -53.0; FunctionUlps = 4.0 }

type Bound = { Out: float; Lse: float }

/// S1 = |scale| * max_{b,h,i,j} sum_d |q[b,h,i,d] k[b,g(h),j,d]| (a bound on every |s_ij|), and max |v|.
let private magnitudes (x: Inputs) (scale: float) =
    let b, hq, tq, d = Array4D.length1 x.Q, Array4D.length2 x.Q, Array4D.length3 x.Q, Array4D.length4 x.Q
    let hkv, tk = Array4D.length2 x.K, Array4D.length3 x.K
    let mutable s1 = 0.0

    for a in 0 .. b - 1 do
        for h in 0 .. hq - 1 do
            let g = h / (hq / hkv)

            for i in 0 .. tq - 1 do
                for j in 0 .. tk - 1 do
                    let mutable sum = 0.0

                    for e in 0 .. d - 1 do
                        sum <- sum + abs (x.Q.[a, h, i, e] * x.K.[a, g, j, e])

                    s1 <- max s1 (abs scale * sum)

    let vmax = x.V |> Seq.cast<float> |> Seq.fold (fun m y -> max m (abs y)) 0.0
    s1, vmax

/// The bound on |computed - exact| of attention evaluated in precision p with key tiles of the online softmax
/// (tiles = 1 for the two-pass reference). Derivation: proofs/attention.md.
let attentionBound (p: Precision) (x: Inputs) (scale: float) (softcap: float) (tiles: int) =
    let u, fu = p.U, p.FunctionUlps
    let d, n, t = float (Array4D.length4 x.Q), float (max 1 (Array4D.length3 x.K)), float (max 1 tiles)
    let s1, vmax = magnitudes x scale
    // Absolute error of one score: the dot product (d terms), the scale and its rounding; then the softcap.
    let deltaS =
        (d + 3.0) * u * s1
        + (if softcap > 0.0 then
               u * s1 + (fu + 1.0) * u * softcap
           else
               0.0)
    // Relative error of one unnormalized weight p_j: two scores (s_j and the max), the subtraction, exp, and the
    // rescaling chain of the online softmax (per tile: exp, subtraction, two products).
    let eps = 2.0 * deltaS + 4.0 * u * s1 + (fu + 1.0) * u + t * (fu + 3.0) * u
    let weights = 2.0 * eps / (1.0 - eps)
    // Sums of n terms and per-tile corrections, for the numerator (3 per term) and the final division.
    let out = vmax * (weights + (3.0 * n + 3.0 * t + 1.0) * u) + n * (2.0 ** -149.0) * vmax
    let epsL = eps + (n + t) * u
    let lse = deltaS + epsL / (1.0 - epsL) + (fu + 1.0) * u * log n + u * (s1 + log n)
    { Out = out; Lse = lse }

/// The extra error of merging `splits` partial results by their lse (proofs/attention.md, attention.split-kv-combine),
/// given the bound of each partial.
let splitBound (p: Precision) (x: Inputs) (scale: float) (partial: Bound) (splits: int) =
    let u, fu = p.U, p.FunctionUlps
    let n, sp = float (max 1 (Array4D.length3 x.K)), float splits
    let s1, vmax = magnitudes x scale
    let epsW = 2.0 * partial.Lse + 2.0 * u * (s1 + log n) + (fu + 1.0) * u

    {
        Out = partial.Out * (1.0 + sp * u) + vmax * (2.0 * epsW / (1.0 - epsW) + (sp + 2.0) * u)
        Lse = partial.Lse + epsW / (1.0 - epsW) + sp * u + (fu + 1.0) * u * log sp + u * (s1 + log n)
    }

let private add (a: Bound) (b: Bound) = { Out = a.Out + b.Out; Lse = a.Lse + b.Lse }

/// The kernel (float32, key tiles of tileK) against the double reference: both error bounds added.
let kernelTolerance (x: Inputs) (s: Spec) (k: Knobs) (tileK: int) =
    let scale, cap = effectiveScale s k, float k.Softcap
    add (attentionBound float32Precision x scale cap (ceilDiv s.Tk tileK)) (attentionBound float64Precision x scale cap 1)

/// Two double-precision evaluations of the same attention (different summation orders).
let doubleTolerance (x: Inputs) (scale: float) (softcap: float) =
    let b = attentionBound float64Precision x scale softcap 1
    add b b

let private tileKOf (k: Knobs) (m: Masking) =
    match m.Block with
    | Some bm -> bm.BlockK
    | None -> k.BlockK

/// The kernel result equals the reference under the same masking, within the derived float32 bound.
let kernelAgrees (s: Spec) (x: Inputs) (k: Knobs) (m: Masking) =
    let expected = dense x (referenceOptions k m)
    let actual = kernel x (kernelOptions k m)
    let tol = kernelTolerance x s k (tileKOf k m)
    checkClose "out" (flat4 expected.Out) (f64 actual.Out) tol.Out
    checkClose "lse" (flat3 expected.Lse) (f64 actual.Lse) tol.Lse

let private kernelProperty specs (masking: Random -> Spec -> Knobs -> Masking) =
    Prop.forAll specs (fun s ->
        let x, k = inputsOf s, knobsOf s
        kernelAgrees s x k (masking (Random(s.Seed + 2)) s k))

// ---------------------------------------------------------------------------------------------------------------
// An independent statement of the causal/window rule and of the scores, used by several properties.
// ---------------------------------------------------------------------------------------------------------------

/// allowed(i, j) of the options, written from proofs/attention.md, Definition: Masks and empty rows: p = i + Tk - Tq; causal j <= p; p - wl <= j <= p + wr.
let allowedByRule tq tk (m: Masking) i j =
    let p = i + tk - tq
    (not m.Causal || j <= p) && (m.Left < 0 || j >= p - m.Left) && (m.Right < 0 || j <= p + m.Right)

let maskAt (mask: bool[,,,]) b h i j =
    let pick n len = if len = 1 then 0 else n
    mask.[pick b (Array4D.length1 mask), pick h (Array4D.length2 mask), pick i (Array4D.length3 mask), pick j (Array4D.length4 mask)]

/// The full allowed set as a [B, Hq, Tq, Tk] array.
let allowedSet (s: Spec) (m: Masking) =
    let elementOk b h i j =
        match m.Block with
        | Some bm -> maskAt (bm.ToDenseMask(nullable m.Mask)) b h i j
        | None ->
            (match m.Mask with
             | Some mask -> maskAt mask b h i j
             | None -> true)

    Array4D.init s.B s.Hq s.Tq s.Tk (fun b h i j -> allowedByRule s.Tq s.Tk m i j && elementOk b h i j)

/// s_ij = softcap(scale * q_i . k_j), computed here independently of the library.
let score (x: Inputs) (scale: float) (softcap: float) b h i j =
    let g = h / (Array4D.length2 x.Q / Array4D.length2 x.K)
    let mutable dot = 0.0

    for d in 0 .. Array4D.length4 x.Q - 1 do
        dot <- dot + x.Q.[b, h, i, d] * x.K.[b, g, j, d]

    let s = scale * dot
    if softcap > 0.0 then softcap * tanh (s / softcap) else s

// ---------------------------------------------------------------------------------------------------------------
// Dense reference: mask alignment, the lse identity, empty rows, GQA, metamorphic relations
// ---------------------------------------------------------------------------------------------------------------

let ``causal and window options equal their bottom-right aligned masks`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let m = windowMasking (Random(s.Seed + 2)) s k
        let ruleMask = Array4D.init 1 1 s.Tq s.Tk (fun _ _ i j -> allowedByRule s.Tq s.Tk m i j)
        let byOptions = dense x (referenceOptions k m)
        let byMask = dense x (referenceOptions k { unmasked with Mask = Some ruleMask })
        checkEqual "out" (flat4 byMask.Out) (flat4 byOptions.Out)
        checkEqual "lse" (flat3 byMask.Lse) (flat3 byOptions.Lse)
        // causal is the window (-1, 0), and MaskPatterns.Causal is the same rule.
        let causal = dense x (referenceOptions k { unmasked with Causal = true })
        let window = dense x (referenceOptions k { unmasked with Right = 0 })

        let pattern =
            dense x (referenceOptions k { unmasked with Mask = Some(MaskPatterns.Broadcast(MaskPatterns.Causal(s.Tq, s.Tk))) })

        checkEqual "causal vs window out" (flat4 causal.Out) (flat4 window.Out)
        checkEqual "causal vs window lse" (flat3 causal.Lse) (flat3 window.Lse)
        checkEqual "causal vs pattern out" (flat4 causal.Out) (flat4 pattern.Out)
        checkEqual "causal vs pattern lse" (flat3 causal.Lse) (flat3 pattern.Lse))

let ``out is the lse weighted sum of the values`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let m = anyMasking (Random(s.Seed + 2)) s k
        let scale, cap = effectiveScale s k, float k.Softcap
        let result = dense x (referenceOptions k m)
        let allowed = allowedSet s m
        let b64 = attentionBound float64Precision x scale cap 1
        let _, vmax = magnitudes x scale
        // exp(s - lse) carries the lse error and the score error (computed twice); n terms add n roundings.
        let delta =
            b64.Lse
            + 2.0 * (float s.D + 3.0) * float64Precision.U * (fst (magnitudes x scale))
            + float s.Tk * float64Precision.U

        let rel = exp delta - 1.0

        for b in 0 .. s.B - 1 do
            for h in 0 .. s.Hq - 1 do
                let g = h / (s.Hq / s.Hkv)

                for i in 0 .. s.Tq - 1 do
                    let keys =
                        [
                            for j in 0 .. s.Tk - 1 do
                                if allowed.[b, h, i, j] then
                                    yield j
                        ]

                    let lse = result.Lse.[b, h, i]

                    if not keys.IsEmpty then
                        let w = keys |> List.map (fun j -> exp (score x scale cap b h i j - lse))
                        let total = List.sum w

                        if abs (total - 1.0) > rel then
                            Assert.Fail(sprintf "row (%d,%d,%d): sum_j exp(s_ij - lse_i) = %.17g, not 1 within %.3g" b h i total rel)

                        for d in 0 .. s.Dv - 1 do
                            let expected = List.fold2 (fun acc wj j -> acc + wj * x.V.[b, g, j, d]) 0.0 w keys
                            let tol = b64.Out + vmax * rel

                            if abs (result.Out.[b, h, i, d] - expected) > tol then
                                Assert.Fail(
                                    sprintf
                                        "out[%d,%d,%d,%d] = %.17g but sum_j exp(s_ij - lse_i) v_j = %.17g (tolerance %.3g)"
                                        b
                                        h
                                        i
                                        d
                                        result.Out.[b, h, i, d]
                                        expected
                                        tol
                                ))

let ``rows without an allowed key give zero and minus infinity`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        // Causal with Tq > Tk empties the first Tq - Tk rows; random masks add all-false rows.
        let m =
            { (explicitMasking r s k) with
                Causal = r.Next 2 = 0
                Left = (if r.Next 2 = 0 then -1 else r.Next(0, 3))
            }

        let allowed = allowedSet s m
        let block = BlockMask.FromDenseMask(allowed, k.BlockQ, k.BlockK)

        let results =
            [
                "dense", (let a = dense x (referenceOptions k m) in flat4 a.Out, flat3 a.Lse)
                "block-sparse",
                (let a =
                    BlockSparseAttention.Compute(
                        x.Q,
                        x.K,
                        x.V,
                        block,
                        allowed,
                        Option.toNullable (Option.map float k.Scale),
                        float k.Softcap
                    )

                 flat4 a.Out, flat3 a.Lse)
                "kernel", (let a = kernel x (kernelOptions k m) in f64 a.Out, f64 a.Lse)
            ]

        for name, out, lse in results |> List.map (fun (n, (o, l)) -> n, o, l) do
            for b in 0 .. s.B - 1 do
                for h in 0 .. s.Hq - 1 do
                    for i in 0 .. s.Tq - 1 do
                        let row = (b * s.Hq + h) * s.Tq + i
                        let empty = not (Seq.exists (fun j -> allowed.[b, h, i, j]) [ 0 .. s.Tk - 1 ])

                        if empty then
                            Assert.That(lse.[row], Is.EqualTo Double.NegativeInfinity, sprintf "%s lse of empty row %d" name row)

                            for d in 0 .. s.Dv - 1 do
                                Assert.That(out.[row * s.Dv + d], Is.EqualTo 0.0, sprintf "%s out of empty row %d" name row)
                        else
                            Assert.That(Double.IsFinite lse.[row], sprintf "%s lse of row %d is %g" name row lse.[row]))

/// Repeats each kv head Hq/Hkv times: k[b, h / group] becomes k'[b, h].
let private repeatHeads (hq: int) (t: float[,,,]) =
    let group = hq / Array4D.length2 t
    Array4D.init (Array4D.length1 t) hq (Array4D.length3 t) (Array4D.length4 t) (fun b h i d -> t.[b, h / group, i, d])

let ``grouped query attention equals multi head attention with repeated kv heads`` () =
    Prop.forAll gqaSpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let m = anyMasking (Random(s.Seed + 2)) s k
        let repeated = { x with K = repeatHeads s.Hq x.K; V = repeatHeads s.Hq x.V }
        let a, b = dense x (referenceOptions k m), dense repeated (referenceOptions k m)
        checkEqual "reference out" (flat4 a.Out) (flat4 b.Out)
        checkEqual "reference lse" (flat3 a.Lse) (flat3 b.Lse)
        let ka, kb = kernel x (kernelOptions k m), kernel repeated (kernelOptions k m)
        checkEqual "kernel out" (f64 ka.Out) (f64 kb.Out)
        checkEqual "kernel lse" (f64 ka.Lse) (f64 kb.Lse))

let ``permuting keys and values together changes nothing without a mask`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        let perm = Array.init s.Tk id

        for n in s.Tk - 1 .. -1 .. 1 do // Fisher-Yates
            let m = r.Next(n + 1)
            let t = perm.[n]
            perm.[n] <- perm.[m]
            perm.[m] <- t

        let permute (t: float[,,,]) =
            Array4D.init (Array4D.length1 t) (Array4D.length2 t) (Array4D.length3 t) (Array4D.length4 t) (fun b h j d ->
                t.[b, h, perm.[j], d])

        let a = dense x (referenceOptions k unmasked)
        let b = dense { x with K = permute x.K; V = permute x.V } (referenceOptions k unmasked)
        let tol = doubleTolerance x (effectiveScale s k) (float k.Softcap)
        checkClose "out" (flat4 a.Out) (flat4 b.Out) tol.Out
        checkClose "lse" (flat3 a.Lse) (flat3 b.Lse) tol.Lse)

let ``adding a per row constant to the scores keeps out and shifts lse`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        let m = { anyMasking r s k with Block = None }
        // With scale 1/2 and an extra dimension q'[.., D] = 2 c_i, k'[.., D] = 1: s'_ij = s_ij + c_i for every key.
        let c = Array3D.init s.B s.Hq s.Tq (fun _ _ _ -> r.NextDouble() * 100.0 - 50.0)

        let q' =
            Array4D.init s.B s.Hq s.Tq (s.D + 1) (fun b h i d -> if d < s.D then x.Q.[b, h, i, d] else 2.0 * c.[b, h, i])

        let k' =
            Array4D.init s.B s.Hkv s.Tk (s.D + 1) (fun b h j d -> if d < s.D then x.K.[b, h, j, d] else 1.0)

        let half = { k with Scale = Some 0.5f; Softcap = 0.0f }
        let shifted = { x with Q = q'; K = k' }
        let a = dense x (referenceOptions half m)
        let b = dense shifted (referenceOptions half m)

        let ta, tb =
            attentionBound float64Precision x 0.5 0.0 1, attentionBound float64Precision shifted 0.5 0.0 1

        checkClose "out" (flat4 a.Out) (flat4 b.Out) (ta.Out + tb.Out)
        let s1', _ = magnitudes shifted 0.5
        let unshifted = Array3D.init s.B s.Hq s.Tq (fun b' h i -> b.Lse.[b', h, i] - c.[b', h, i])
        checkClose "lse - c" (flat3 a.Lse) (flat3 unshifted) (ta.Lse + tb.Lse + 4.0 * float64Precision.U * (s1' + log (float s.Tk) + 1.0)))

let ``dense attention rejects bad input naming the array and index`` () =
    let s = { B = 1; Hq = 2; Hkv = 1; Tq = 3; Tk = 4; D = 5; Dv = 2; Values = Uniform; Seed = 7 }
    let x = inputsOf s
    let o = AttentionOptions()
    let q = x.Q.Clone() :?> float[,,,]
    q.[0, 1, 2, 3] <- nan
    let e = throws (fun () -> DenseAttention.Compute(q, x.K, x.V, o) |> ignore)
    Assert.That(e.ParamName, Is.EqualTo "q")
    Assert.That(e.Message, Does.Contain "q[0, 1, 2, 3] is NaN")
    let v = x.V.Clone() :?> float[,,,]
    v.[0, 0, 3, 1] <- -infinity
    let e = throws (fun () -> DenseAttention.Compute(x.Q, x.K, v, o) |> ignore)
    Assert.That(e.ParamName, Is.EqualTo "v")
    Assert.That(e.Message, Does.Contain "v[0, 0, 3, 1] is -Infinity")
    let badMask = AttentionOptions(Mask = Array4D.create 1 1 2 4 true)
    let e = throws (fun () -> DenseAttention.Compute(x.Q, x.K, x.V, badMask) |> ignore)
    Assert.That(e.ParamName, Is.EqualTo "mask")
    let k3 = Array4D.create 1 3 4 5 0.0
    let v3 = Array4D.create 1 3 4 2 0.0
    let e = throws (fun () -> DenseAttention.Compute(x.Q, k3, v3, o) |> ignore)
    Assert.That(e.ParamName, Is.EqualTo "k")

    throws (fun () -> DenseAttention.Compute(x.Q, x.K, x.V, AttentionOptions(WindowLeft = -2)) |> ignore)
    |> ignore

    throws (fun () -> DenseAttention.Compute(x.Q, x.K, x.V, AttentionOptions(Softcap = -1.0)) |> ignore)
    |> ignore

let ``no keys at all gives zero and minus infinity everywhere`` () =
    let x =
        { Q = Array4D.create 1 2 3 4 1.0; K = Array4D.create 1 1 0 4 0.0; V = Array4D.create 1 1 0 2 0.0 }

    let a = dense x (AttentionOptions())
    Assert.That(flat3 a.Lse |> Array.forall Double.IsNegativeInfinity)
    Assert.That(flat4 a.Out |> Array.forall ((=) 0.0))
    let kr = kernel x (FlashAttentionOptions())
    Assert.That(kr.Lse |> Array.forall Single.IsNegativeInfinity)
    Assert.That(kr.Out |> Array.forall ((=) 0.0f))

// ---------------------------------------------------------------------------------------------------------------
// Block masks and block-sparse attention
// ---------------------------------------------------------------------------------------------------------------

let ``block sparse equals dense attention under the expanded mask`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        let block = randomBlockMask r s k.BlockQ k.BlockK
        let element = if r.Next 2 = 0 then None else Some(randomMask r s)
        let scale = Option.toNullable (Option.map float k.Scale)

        let sparse =
            BlockSparseAttention.Compute(x.Q, x.K, x.V, block, nullable element, scale, float k.Softcap)

        let expanded =
            dense x (AttentionOptions(Scale = scale, Softcap = float k.Softcap, Mask = block.ToDenseMask(nullable element)))

        checkEqual "out" (flat4 expanded.Out) (flat4 sparse.Out)
        checkEqual "lse" (flat3 expanded.Lse) (flat3 sparse.Lse))

let ``block sparse of a dense mask equals dense attention under that mask`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let mask = randomMask (Random(s.Seed + 2)) s
        // FromDenseMask needs the tiles of the real Tq x Tk grid, so expand a broadcast query/key dimension first.
        let full =
            Array4D.init (Array4D.length1 mask) (Array4D.length2 mask) s.Tq s.Tk (fun b h i j -> maskAt mask b h i j)

        let block = BlockMask.FromDenseMask(full, k.BlockQ, k.BlockK)
        let scale = Option.toNullable (Option.map float k.Scale)
        let sparse = BlockSparseAttention.Compute(x.Q, x.K, x.V, block, mask, scale, float k.Softcap)
        let reference = dense x (AttentionOptions(Scale = scale, Softcap = float k.Softcap, Mask = mask))
        checkEqual "out" (flat4 reference.Out) (flat4 sparse.Out)
        checkEqual "lse" (flat3 reference.Lse) (flat3 sparse.Lse))

let ``FromDenseMask then ToDenseMask gives back the mask`` () =
    Prop.forAll anySpecs (fun s ->
        let r = Random(s.Seed + 2)
        let m = randomMask r s

        let mask =
            Array4D.init (Array4D.length1 m) (Array4D.length2 m) s.Tq s.Tk (fun b h i j -> maskAt m b h i j)

        let bq, bk = 1 + r.Next 5, 1 + r.Next 5
        let block = BlockMask.FromDenseMask(mask, bq, bk)
        Assert.That(block.ToDenseMask(mask), Is.EqualTo mask, "ToDenseMask(mask) after FromDenseMask(mask)")
        // Each tile's kind follows the rule, checked by counting here; ToDenseMask(null) is the tile cover.
        let cover = block.ToDenseMask(null)

        for b in 0 .. Array4D.length1 mask - 1 do
            for h in 0 .. Array4D.length2 mask - 1 do
                for rq in 0 .. block.QueryBlocks - 1 do
                    for ck in 0 .. block.KeyBlocks - 1 do
                        let cells =
                            [
                                for i in rq * bq .. min s.Tq ((rq + 1) * bq) - 1 do
                                    for j in ck * bk .. min s.Tk ((ck + 1) * bk) - 1 do
                                        yield i, j
                            ]

                        let trues = cells |> List.filter (fun (i, j) -> mask.[b, h, i, j]) |> List.length

                        let expected =
                            if trues = cells.Length then TileKind.Full
                            elif trues > 0 then TileKind.Partial
                            else TileKind.Absent

                        Assert.That(block.Kind(b, h, rq, ck), Is.EqualTo expected, sprintf "tile (%d,%d,%d,%d)" b h rq ck)

                        for i, j in cells do
                            Assert.That(cover.[b, h, i, j], Is.EqualTo(expected <> TileKind.Absent)))

let ``BlockMask rejects invalid lists naming the array and index`` () =
    let make counts (indices: int[,,,]) fullCounts fullIndices = BlockMask(counts, indices, fullCounts, fullIndices, 2, 2, 4, 6) |> ignore // nq = 2, nk = 3
    let ok () = Array3D.create 1 1 2 1, Array4D.create 1 1 2 3 0

    let check (f: unit -> unit) (param: string) (text: string) =
        let e = throws (fun () -> f ())
        Assert.That(e.ParamName, Is.EqualTo param)
        Assert.That(e.Message, Does.Contain text)

    let c, i = ok ()
    make c i null null // valid
    let c, i = ok ()
    c.[0, 0, 1] <- 4
    check (fun () -> make c i null null) "kvNumBlocks" "kvNumBlocks[0, 0, 1] = 4"
    let c, i = ok ()
    c.[0, 0, 0] <- 2
    i.[0, 0, 0, 0] <- 2
    i.[0, 0, 0, 1] <- 1
    check (fun () -> make c i null null) "kvIndices" "kvIndices[0, 0, 0, 1] = 1"
    let c, i = ok ()
    i.[0, 0, 1, 0] <- 3
    check (fun () -> make c i null null) "kvIndices" "kvIndices[0, 0, 1, 0] = 3"
    let c, i = ok ()
    let fc, fi = ok ()
    check (fun () -> make c i fc fi) "fullKvIndices" "also listed"
    let c, i = ok ()
    check (fun () -> make c (Array4D.create 1 1 2 2 0) null null) "kvIndices" "expected [1, 1, 2, 3]"
    check (fun () -> make c i (Array3D.create 1 1 2 0) null) "fullKvIndices" "together"

let ``block sparse rejects a block mask for other sizes`` () =
    let s = { B = 1; Hq = 2; Hkv = 1; Tq = 4; Tk = 6; D = 3; Dv = 2; Values = Uniform; Seed = 3 }
    let x = inputsOf s
    let wrong = BlockMask.FromDenseMask(Array4D.create 1 1 4 5 true, 2, 2)

    let e =
        throws (fun () -> BlockSparseAttention.Compute(x.Q, x.K, x.V, wrong, null, Nullable(), 0.0) |> ignore)

    Assert.That(e.ParamName, Is.EqualTo "blockMask")

// ---------------------------------------------------------------------------------------------------------------
// The float32 kernel against the reference
// ---------------------------------------------------------------------------------------------------------------

let ``kernel equals reference without a mask`` () = kernelProperty mhaSpecs (fun _ _ _ -> unmasked)

let ``kernel equals reference with a causal mask`` () = kernelProperty anySpecs causalMasking

let ``kernel equals reference with a sliding window`` () = kernelProperty anySpecs windowMasking

let ``kernel equals reference with grouped kv heads`` () = kernelProperty gqaSpecs anyMasking

let ``kernel equals reference with an explicit mask`` () = kernelProperty anySpecs explicitMasking

let ``kernel equals reference with a block mask`` () = kernelProperty anySpecs blockMasking

let ``kernel equals reference when Tq differs from Tk`` () = kernelProperty crossSpecs anyMasking

let private toHalf (v: float32) : Half = Half.op_Explicit v
let private ofHalf (h: Half) : float32 = Half.op_Explicit h

let ``kernel equals reference on half and bfloat16 inputs`` () =
    Prop.forAll anySpecs (fun s ->
        let x0, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        let useHalf = r.Next 2 = 0

        let narrow (v: float) =
            if useHalf then
                float (ofHalf (toHalf (float32 v)))
            else
                float ((BFloat16.FromSingle(float32 v)).ToSingle())

        let map4 (t: float[,,,]) =
            Array4D.init (Array4D.length1 t) (Array4D.length2 t) (Array4D.length3 t) (Array4D.length4 t) (fun a b c d ->
                narrow t.[a, b, c, d])

        let x = { Q = map4 x0.Q; K = map4 x0.K; V = map4 x0.V }
        let m = anyMasking r s k
        let expected = dense x (referenceOptions k m)
        let shape = shapeOf x
        let out = Array.zeroCreate (int shape.OutputElements)
        let lse = Array.zeroCreate (int shape.LseElements)
        let o = kernelOptions k m

        if useHalf then
            let h t = flat4 t |> Array.map (float32 >> toHalf)
            let q, k, v = h x.Q, h x.K, h x.V

            FlashAttention.Forward(
                ReadOnlySpan<Half>(q),
                ReadOnlySpan<Half>(k),
                ReadOnlySpan<Half>(v),
                shape,
                o,
                Span<float32>(out),
                Span<float32>(lse)
            )
        else
            let h t = flat4 t |> Array.map (float32 >> BFloat16.FromSingle)
            let q, k, v = h x.Q, h x.K, h x.V

            FlashAttention.Forward(
                ReadOnlySpan<BFloat16>(q),
                ReadOnlySpan<BFloat16>(k),
                ReadOnlySpan<BFloat16>(v),
                shape,
                o,
                Span<float32>(out),
                Span<float32>(lse)
            )

        let tol = kernelTolerance x s k (tileKOf k m)
        checkClose "out" (flat4 expected.Out) (f64 out) tol.Out
        checkClose "lse" (flat3 expected.Lse) (f64 lse) tol.Lse)

let ``float32 baseline of the reference is within the same bound`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let m = anyMasking (Random(s.Seed + 2)) s k
        let toF32 = Func<float, float>(fun v -> float (float32 v))
        let exact = dense x (referenceOptions k m)
        let baseline = DenseAttention.Compute(x.Q, x.K, x.V, referenceOptions k m, toF32)
        let tol = kernelTolerance x s k (max 1 s.Tk) // the two-pass baseline is the one-tile case
        checkClose "out" (flat4 exact.Out) (flat4 baseline.Out) tol.Out
        checkClose "lse" (flat3 exact.Lse) (flat3 baseline.Lse) tol.Lse)

let ``kernel equals reference on long sequences`` (b, hq, hkv, tq, tk, d, dv, bq, bk, causal, kind) =
    let s =
        {
            B = b
            Hq = hq
            Hkv = hkv
            Tq = tq
            Tk = tk
            D = d
            Dv = dv
            Values = Uniform
            Seed = 97 * tq + tk
        }

    let x = inputsOf s
    let k = { Scale = None; Softcap = (if kind = 2 then 5.0f else 0.0f); BlockQ = bq; BlockK = bk }
    let r = Random 11

    let m =
        match kind with
        | 1 -> { unmasked with Left = 100; Right = 0 }
        | 2 -> explicitMasking r s k
        | 3 -> blockMasking r s k
        | _ -> unmasked

    kernelAgrees s x k { m with Causal = causal }

let ``kernel is deterministic with and without threads`` () =
    let s = { B = 2; Hq = 4; Hkv = 2; Tq = 97; Tk = 257; D = 32; Dv = 32; Values = Uniform; Seed = 5 }
    let x = inputsOf s

    let run threads =
        let o = FlashAttentionOptions(Causal = true, BlockQ = 16, BlockK = 32, Parallel = threads)
        kernel x o

    let a, b, c = run true, run true, run false
    checkEqual "out, two threaded runs" (f64 a.Out) (f64 b.Out)
    checkEqual "lse, two threaded runs" (f64 a.Lse) (f64 b.Lse)
    checkEqual "out, threaded vs single-threaded" (f64 a.Out) (f64 c.Out)
    checkEqual "lse, threaded vs single-threaded" (f64 a.Lse) (f64 c.Lse)
    let r1 = dense x (AttentionOptions(Causal = true))
    let r2 = dense x (AttentionOptions(Causal = true))
    checkEqual "reference reruns" (flat4 r1.Out) (flat4 r2.Out)

let ``kernel rejects bad input naming the array and index`` () =
    let s = { B = 1; Hq = 2; Hkv = 1; Tq = 3; Tk = 4; D = 5; Dv = 2; Values = Uniform; Seed = 7 }
    let x = inputsOf s
    let q = f32 (flat4 x.Q)
    q.[(1 * 3 + 2) * 5 + 3] <- Single.PositiveInfinity // q[0, 1, 2, 3]

    let e =
        throws (fun () ->
            FlashAttention.Compute(q, f32 (flat4 x.K), f32 (flat4 x.V), shapeOf x, FlashAttentionOptions())
            |> ignore)

    Assert.That(e.ParamName, Is.EqualTo "q")
    Assert.That(e.Message, Does.Contain "q[0, 1, 2, 3] is +Infinity")

    let e =
        throws (fun () ->
            FlashAttention.Compute(f32 (flat4 x.Q), [| 1.0f |], f32 (flat4 x.V), shapeOf x, FlashAttentionOptions())
            |> ignore)

    Assert.That(e.ParamName, Is.EqualTo "k")

    throws (fun () ->
        FlashAttention.ComputeSplitKv(f32 (flat4 x.Q), f32 (flat4 x.K), f32 (flat4 x.V), shapeOf x, FlashAttentionOptions(), 0)
        |> ignore)
    |> ignore

// ---------------------------------------------------------------------------------------------------------------
// Online softmax and split-KV
// ---------------------------------------------------------------------------------------------------------------

let ``online softmax over small tiles equals the single tile two pass softmax`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        let m = { anyMasking r s k with Block = None }
        let small = { k with BlockK = 1 + r.Next 3 }
        let single = { k with BlockK = max 1 s.Tk } // one key tile: the running max is the row max, no rescaling
        let a, b = kernel x (kernelOptions small m), kernel x (kernelOptions single m)
        let scale, cap = effectiveScale s k, float k.Softcap

        let tol =
            add (attentionBound float32Precision x scale cap (ceilDiv s.Tk small.BlockK)) (attentionBound float32Precision x scale cap 1)

        checkClose "out" (f64 b.Out) (f64 a.Out) tol.Out
        checkClose "lse" (f64 b.Lse) (f64 a.Lse) tol.Lse)

let ``split kv equals the unsplit kernel`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 2)
        let m = anyMasking r s k
        let splits = 1 + r.Next 5
        let o = kernelOptions k m
        let whole = kernel x o

        let split =
            FlashAttention.ComputeSplitKv(f32 (flat4 x.Q), f32 (flat4 x.K), f32 (flat4 x.V), shapeOf x, o, splits)

        let scale, cap = effectiveScale s k, float k.Softcap
        let tiles = ceilDiv s.Tk (tileKOf k m)
        let perSplit = max 1 (ceilDiv tiles splits)
        let unsplitBound = attentionBound float32Precision x scale cap tiles
        let partial = attentionBound float32Precision x scale cap perSplit
        let merged = splitBound float32Precision x scale partial (max 1 (ceilDiv tiles perSplit))
        let tol = add unsplitBound merged
        checkClose "out" (f64 whole.Out) (f64 split.Out) tol.Out
        checkClose "lse" (f64 whole.Lse) (f64 split.Lse) tol.Lse)

/// The tiled Vector512 path and the row-by-row path of the kernel (the one taken where Vector512 is not accelerated)
/// agree within the sum of their float32 bounds, under every masking the kernel takes and with or without splits.
/// Where this machine has no Vector512, asking for the tiled path must be refused.
let ``tiled and row by row kernel paths agree`` () =
    Prop.forAll anySpecs (fun s ->
        let x, k = inputsOf s, knobsOf s
        let r = Random(s.Seed + 3)
        let m = anyMasking r s k
        let splits = 1 + r.Next 3
        let o = kernelOptions k m
        let q, kk, v = f32 (flat4 x.Q), f32 (flat4 x.K), f32 (flat4 x.V)
        let rows = FlashAttention.ComputeOnPath(q, kk, v, shapeOf x, o, splits, false)

        if FlashAttention.TiledSupported then
            let tiled = FlashAttention.ComputeOnPath(q, kk, v, shapeOf x, o, splits, true)
            let scale, cap = effectiveScale s k, float k.Softcap
            let tiles = ceilDiv s.Tk (tileKOf k m)
            let perSplit = max 1 (ceilDiv tiles splits)
            let partial = attentionBound float32Precision x scale cap perSplit
            let one = add partial (splitBound float32Precision x scale partial (max 1 (ceilDiv tiles perSplit)))
            let tol = add one one
            checkClose "out" (f64 rows.Out) (f64 tiled.Out) tol.Out
            checkClose "lse" (f64 rows.Lse) (f64 tiled.Lse) tol.Lse
        else
            Assert.Throws<PlatformNotSupportedException>(
                Action(fun () -> FlashAttention.ComputeOnPath(q, kk, v, shapeOf x, o, splits, true) |> ignore)
            )
            |> ignore)

let ``split kv decoding matches the reference`` (b, hq, hkv, tq, tk, d, bk, splits) =
    let s =
        { B = b; Hq = hq; Hkv = hkv; Tq = tq; Tk = tk; D = d; Dv = d; Values = Sharp; Seed = tk + splits }

    let x = inputsOf s
    let k = { Scale = None; Softcap = 0.0f; BlockQ = 16; BlockK = bk }
    let m = { unmasked with Causal = true }
    let expected = dense x (referenceOptions k m)

    let actual =
        FlashAttention.ComputeSplitKv(f32 (flat4 x.Q), f32 (flat4 x.K), f32 (flat4 x.V), shapeOf x, kernelOptions k m, splits)

    let tiles = ceilDiv tk bk
    let perSplit = max 1 (ceilDiv tiles splits)
    let scale = effectiveScale s k
    let partial = attentionBound float32Precision x scale 0.0 perSplit

    let tol =
        add (splitBound float32Precision x scale partial (ceilDiv tiles perSplit)) (attentionBound float64Precision x scale 0.0 1)

    checkClose "out" (flat4 expected.Out) (f64 actual.Out) tol.Out
    checkClose "lse" (flat3 expected.Lse) (f64 actual.Lse) tol.Lse

// ---------------------------------------------------------------------------------------------------------------
// Fixed patterns, each against a constructive description of its allowed set
// ---------------------------------------------------------------------------------------------------------------

type PatternCase = { Tq: int; Tk: int; A: int; C: int; Seed: int }

let private patternCases =
    gen {
        let! tk = Gen.choose (0, 40)
        let! tq = Gen.choose (0, tk + 3)
        let! a = Gen.choose (1, 9)
        let! c = Gen.choose (0, 9)
        let! seed = Gen.choose (0, 1_000_000)
        return { Tq = tq; Tk = tk; A = a; C = c; Seed = seed }
    }
    |> Arb.fromGen

/// Builds the expected [Tq, Tk] mask from a set of allowed keys per query position p = i + Tk - Tq.
let private fromSets (tq: int) (tk: int) (keysOf: int -> int seq) =
    let m = Array2D.create tq tk false

    for i in 0 .. tq - 1 do
        for j in keysOf (i + tk - tq) do
            if j >= 0 && j < tk then
                m.[i, j] <- true

    m

let ``sliding window allows exactly the keys within the window`` () =
    Prop.forAll patternCases (fun c ->
        let left, right = c.A - 2, c.C - 1 // -1 (unbounded) included on both sides

        let expected =
            fromSets c.Tq c.Tk (fun p -> seq { (if left < 0 then 0 else p - left) .. (if right < 0 then c.Tk - 1 else p + right) })

        Assert.That(MaskPatterns.SlidingWindow(c.Tq, c.Tk, left, right), Is.EqualTo expected))

let ``strided pattern is the local band plus every stride-th earlier key`` () =
    Prop.forAll patternCases (fun c ->
        let l = c.A

        let expected =
            fromSets c.Tq c.Tk (fun p ->
                seq {
                    yield! [ p - l + 1 .. p ]
                    yield! [ p .. -l .. 0 ]
                })

        Assert.That(MaskPatterns.Strided(c.Tq, c.Tk, l), Is.EqualTo expected))

let ``fixed pattern is the own block plus the summary positions of earlier blocks`` () =
    Prop.forAll patternCases (fun c ->
        let l = c.A
        let summary = min c.C l

        let expected =
            fromSets c.Tq c.Tk (fun p ->
                if p < 0 then
                    Seq.empty
                else
                    let start = (p / l) * l

                    seq {
                        yield! [ start..p ]

                        for block in 0 .. p / l - 1 do
                            yield! [ block * l + l - summary .. block * l + l - 1 ]
                    })

        Assert.That(MaskPatterns.Fixed(c.Tq, c.Tk, l, summary), Is.EqualTo expected))

let ``longformer pattern is the window plus global rows and columns`` () =
    Prop.forAll patternCases (fun c ->
        let r = Random c.Seed

        let globals =
            if c.Tk = 0 then
                [||]
            else
                Array.init (r.Next 4) (fun _ -> r.Next c.Tk)

        let w = c.A - 1

        let expected =
            fromSets c.Tq c.Tk (fun p ->
                if Array.contains p globals then
                    seq { 0 .. c.Tk - 1 }
                else
                    seq {
                        yield! [ p - w .. p + w ]
                        yield! globals
                    })

        Assert.That(MaskPatterns.Longformer(c.Tq, c.Tk, w, globals), Is.EqualTo expected))

let ``bigbird pattern is global window and random blocks`` () =
    Prop.forAll patternCases (fun c ->
        let r = Random c.Seed
        let t, bs = c.Tk, c.A
        let nb = ceilDiv t bs
        let window = [| 1; 3; 5 |].[r.Next 3]
        let globalBlocks = r.Next(0, min nb 2 + 1)
        let randoms = Array2D.init nb (if nb = 0 then 0 else r.Next 3) (fun _ _ -> r.Next nb)
        // Constructively: the key blocks each query block attends.
        let keyBlocks a =
            if a < globalBlocks then
                Set.ofList [ 0 .. nb - 1 ]
            else
                Set.unionMany
                    [
                        Set.ofList [ 0 .. globalBlocks - 1 ]
                        Set.ofList [ max 0 (a - window / 2) .. min (nb - 1) (a + window / 2) ]
                        Set.ofSeq [ for n in 0 .. Array2D.length2 randoms - 1 -> randoms.[a, n] ]
                    ]

        let expected =
            fromSets t t (fun p ->
                seq {
                    for kb in keyBlocks (p / bs) do
                        yield! [ kb * bs .. kb * bs + bs - 1 ]
                })

        let mask = MaskPatterns.BigBird(t, bs, window, globalBlocks, randoms)
        Assert.That(mask, Is.EqualTo expected)
        // The block form lists only full tiles and expands to the same mask.
        let block = MaskPatterns.BigBirdBlockMask(t, bs, window, globalBlocks, randoms)
        Assert.That(block.KvNumBlocks |> Seq.cast<int> |> Seq.forall ((=) 0), "no partial tiles")
        Assert.That(block.ToDenseMask(null), Is.EqualTo(MaskPatterns.Broadcast mask)))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "attention/dense"
        "AttentionTests"
        [
            Proofs.prop
                [ "attention.mask-alignment" ]
                "causal and window options equal their bottom-right aligned masks"
                ``causal and window options equal their bottom-right aligned masks``
            Proofs.prop
                [ "attention.lse-identity" ]
                "out is the lse weighted sum of the values"
                ``out is the lse weighted sum of the values``
            Proofs.prop
                [ "attention.empty-rows" ]
                "rows without an allowed key give zero and minus infinity"
                ``rows without an allowed key give zero and minus infinity``
            Proofs.prop
                [ "attention.gqa-repeat" ]
                "grouped query attention equals multi head attention with repeated kv heads"
                ``grouped query attention equals multi head attention with repeated kv heads``
            Proofs.prop
                [ "attention.key-permutation" ]
                "permuting keys and values together changes nothing without a mask"
                ``permuting keys and values together changes nothing without a mask``
            Proofs.prop
                [ "attention.row-shift" ]
                "adding a per row constant to the scores keeps out and shifts lse"
                ``adding a per row constant to the scores keeps out and shifts lse``
            Proofs.test
                []
                "dense attention rejects bad input naming the array and index"
                ``dense attention rejects bad input naming the array and index``
            Proofs.test
                []
                "no keys at all gives zero and minus infinity everywhere"
                ``no keys at all gives zero and minus infinity everywhere``
            Proofs.prop
                [ "attention.block-sparse-equivalence" ]
                "block sparse equals dense attention under the expanded mask"
                ``block sparse equals dense attention under the expanded mask``
            Proofs.prop
                [ "attention.block-sparse-equivalence" ]
                "block sparse of a dense mask equals dense attention under that mask"
                ``block sparse of a dense mask equals dense attention under that mask``
            Proofs.prop
                [ "attention.blockmask-roundtrip" ]
                "FromDenseMask then ToDenseMask gives back the mask"
                ``FromDenseMask then ToDenseMask gives back the mask``
            Proofs.test
                []
                "BlockMask rejects invalid lists naming the array and index"
                ``BlockMask rejects invalid lists naming the array and index``
            Proofs.test [] "block sparse rejects a block mask for other sizes" ``block sparse rejects a block mask for other sizes``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference without a mask"
                ``kernel equals reference without a mask``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference with a causal mask"
                ``kernel equals reference with a causal mask``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference with a sliding window"
                ``kernel equals reference with a sliding window``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference with grouped kv heads"
                ``kernel equals reference with grouped kv heads``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference with an explicit mask"
                ``kernel equals reference with an explicit mask``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference with a block mask"
                ``kernel equals reference with a block mask``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference when Tq differs from Tk"
                ``kernel equals reference when Tq differs from Tk``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference on half and bfloat16 inputs"
                ``kernel equals reference on half and bfloat16 inputs``
            Proofs.prop
                [ "attention.kernel-matches-reference" ]
                "float32 baseline of the reference is within the same bound"
                ``float32 baseline of the reference is within the same bound``
            Proofs.cases
                [ "attention.kernel-matches-reference" ]
                "kernel equals reference on long sequences"
                [
                    "1, 2, 1, 97, 97, 16, 16, 32, 32, true, 0",
                    (fun () -> ``kernel equals reference on long sequences`` (1, 2, 1, 97, 97, 16, 16, 32, 32, true, 0))
                    "1, 4, 2, 257, 257, 8, 8, 64, 64, false, 0",
                    (fun () -> ``kernel equals reference on long sequences`` (1, 4, 2, 257, 257, 8, 8, 64, 64, false, 0))
                    "2, 2, 1, 1, 257, 32, 16, 1, 16, false, 1",
                    (fun () -> ``kernel equals reference on long sequences`` (2, 2, 1, 1, 257, 32, 16, 1, 16, false, 1))
                    "1, 3, 3, 97, 257, 7, 5, 16, 64, true, 2",
                    (fun () -> ``kernel equals reference on long sequences`` (1, 3, 3, 97, 257, 7, 5, 16, 64, true, 2))
                    "1, 2, 2, 257, 97, 4, 4, 64, 128, false, 3",
                    (fun () -> ``kernel equals reference on long sequences`` (1, 2, 2, 257, 97, 4, 4, 64, 128, false, 3))
                ]
            Proofs.test [] "kernel is deterministic with and without threads" ``kernel is deterministic with and without threads``
            Proofs.test [] "kernel rejects bad input naming the array and index" ``kernel rejects bad input naming the array and index``
            Proofs.prop
                [ "attention.online-softmax-exact" ]
                "online softmax over small tiles equals the single tile two pass softmax"
                ``online softmax over small tiles equals the single tile two pass softmax``
            Proofs.prop [ "attention.split-kv-combine" ] "split kv equals the unsplit kernel" ``split kv equals the unsplit kernel``
            Proofs.prop
                [ "attention.kernel-matches-reference"; "attention.split-kv-combine" ]
                "tiled and row by row kernel paths agree"
                ``tiled and row by row kernel paths agree``
            Proofs.cases
                [ "attention.split-kv-combine" ]
                "split kv decoding matches the reference"
                [
                    "1, 8, 2, 1, 257, 64, 16, 4", (fun () -> ``split kv decoding matches the reference`` (1, 8, 2, 1, 257, 64, 16, 4))
                    "2, 4, 4, 3, 97, 16, 8, 7", (fun () -> ``split kv decoding matches the reference`` (2, 4, 4, 3, 97, 16, 8, 7))
                    "1, 2, 1, 1, 1, 8, 64, 3", (fun () -> ``split kv decoding matches the reference`` (1, 2, 1, 1, 1, 8, 64, 3))
                ]
            Proofs.prop
                [ "attention.pattern-sliding-window" ]
                "sliding window allows exactly the keys within the window"
                ``sliding window allows exactly the keys within the window``
            Proofs.prop
                [ "attention.pattern-strided" ]
                "strided pattern is the local band plus every stride-th earlier key"
                ``strided pattern is the local band plus every stride-th earlier key``
            Proofs.prop
                [ "attention.pattern-fixed" ]
                "fixed pattern is the own block plus the summary positions of earlier blocks"
                ``fixed pattern is the own block plus the summary positions of earlier blocks``
            Proofs.prop
                [ "attention.pattern-longformer" ]
                "longformer pattern is the window plus global rows and columns"
                ``longformer pattern is the window plus global rows and columns``
            Proofs.prop
                [ "attention.pattern-bigbird" ]
                "bigbird pattern is global window and random blocks"
                ``bigbird pattern is global window and random blocks``
        ]
