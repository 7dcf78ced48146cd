/// Tight and fair tolerances for Sinkhorn, SoftTopk and the maxscore/base objectives (issue 12, part 2): correct
/// candidates computed in float32 in independent orders and rounded to their format pass; a temperature or
/// regularization off by a factor (1 + d), d = 1e-3 in float32 and 1e-2 in float16/bfloat16, fails. Theorems in
/// proofs/sinkhorn.md, proofs/softtopk.md and proofs/maxscore.md.
module Reference.Tests.RoutingToleranceProperties2

open System
open System.Collections.Generic
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Numerics
open Reference.Harness.Algorithms
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Proofs

/// The candidate formats and the perturbation each must catch (the issue's d).
let formats = [ NumberFormat.Float32, 1e-3; NumberFormat.Float16, 1e-2; NumberFormat.BFloat16, 1e-2 ]

let private round (fmt: NumberFormat) (x: float32) = float32 (Precision.Round(float x, fmt))

/// N log-skewed in 1..65536 (median 16): most cases small, a few at the largest sizes.
let private skewedN (t: int) = max 1 (int (2.0 ** (16.0 * (float t / 1000.0) ** 2.0)))

/// Router-like logits (per-expert bias, gaussian), rounded to the candidate's format: its inputs.
let private logits seed n e sigma fmt =
    RoutingToleranceProperties.routerLogits seed n e sigma
    |> Array2D.map (fun v -> Precision.Round(v, fmt))

// ---------------------------------------------------------------------------------------------------------------
// Sinkhorn: three float32 implementations (log domain unscaled with sequential log-sum-exp, log domain in units of reg
// with pairwise log-sum-exp, Sinkhorn-Knopp scalings), outputs rounded to the format.

[<StructuredFormatDisplay("{Show}")>]
type SinkhornCase =
    {
        X: float[,]
        Reg: float
        Iterations: int
        Seed: int
        Ratio: float
    }

    member c.Show =
        sprintf "N=%d E=%d reg=%g T=%d seed=%d" (Array2D.length1 c.X) (Array2D.length2 c.X) c.Reg c.Iterations c.Seed

let sinkhornCase =
    gen {
        let! t = Gen.choose (0, 1000)
        let! e = Gen.elements [ 2; 3; 4; 8; 16 ]
        let n = skewedN t
        let! sigma = Gen.elements [ 0.5; 1.0; 2.0 ]
        let! ratio = Gen.elements [ 2.0; 5.0; 10.0; 30.0 ] // max|M| / reg: how sharp the plan is
        let! iterations = Gen.elements [ 1; 3; 10; 30; 100; 300 ]
        let! seed = Gen.choose (0, Int32.MaxValue - 1)
        let iterations = max 1 (min iterations (300_000 / (n * e)))
        let x = RoutingToleranceProperties.routerLogits seed n e sigma
        let largest = x |> Seq.cast<float> |> Seq.map abs |> Seq.max
        let reg = float (float32 (max 1e-3 (largest / ratio)))
        return { X = x; Reg = reg; Iterations = iterations; Seed = seed; Ratio = ratio }
    }

let private arbSinkhorn = Arb.fromGen sinkhornCase

let private lseSequential (v: float32[]) =
    let m = Array.max v
    m + MathF.Log(v |> Array.fold (fun s x -> s + MathF.Exp(x - m)) 0.0f)

let rec private pairwise (v: float32[]) (lo: int) (hi: int) : float32 =
    if hi - lo <= 8 then
        let mutable s = 0.0f

        for i in lo .. hi - 1 do
            s <- s + v.[i]

        s
    else
        let mid = (lo + hi) / 2
        pairwise v lo mid + pairwise v mid hi

let private lsePairwise (v: float32[]) =
    let m = Array.max v
    m + MathF.Log(pairwise (v |> Array.map (fun x -> MathF.Exp(x - m))) 0 v.Length)

/// Log domain, potentials in the units of the cost: g_j = reg (log b_j - lse_i((f_i - M_ij)/reg)), then f; sequential sums.
let sinkhornUnscaled (x: float32[,]) (reg: float32) iterations =
    let n, e = Array2D.length1 x, Array2D.length2 x
    let la, lb = MathF.Log(1.0f / float32 n), MathF.Log(1.0f / float32 e)
    let f = Array.zeroCreate<float32> n
    let g = Array.zeroCreate<float32> e

    for _ in 1..iterations do
        for j in 0 .. e - 1 do
            g.[j] <- reg * (lb - lseSequential (Array.init n (fun i -> (f.[i] + x.[i, j]) / reg)))

        for i in 0 .. n - 1 do
            f.[i] <- reg * (la - lseSequential (Array.init e (fun j -> (g.[j] + x.[i, j]) / reg)))

    Array.init (n * e) (fun c -> MathF.Exp((f.[c / e] + g.[c % e] + x.[c / e, c % e]) / reg)), f, g

/// Log domain in units of reg (POT sinkhorn_log): Mr = X/reg once, pairwise log-sum-exp, f = reg h, g = reg k.
let sinkhornScaled (x: float32[,]) (reg: float32) iterations =
    let n, e = Array2D.length1 x, Array2D.length2 x
    let mr = x |> Array2D.map (fun v -> v / reg)
    let la, lb = MathF.Log(1.0f / float32 n), MathF.Log(1.0f / float32 e)
    let h = Array.zeroCreate<float32> n
    let k = Array.zeroCreate<float32> e

    for _ in 1..iterations do
        for j in 0 .. e - 1 do
            k.[j] <- lb - lsePairwise (Array.init n (fun i -> mr.[i, j] + h.[i]))

        for i in 0 .. n - 1 do
            h.[i] <- la - lsePairwise (Array.init e (fun j -> mr.[i, j] + k.[j]))

    Array.init (n * e) (fun c -> MathF.Exp(mr.[c / e, c % e] + h.[c / e] + k.[c % e])), Array.map ((*) reg) h, Array.map ((*) reg) k

/// Sinkhorn-Knopp scalings (POT sinkhorn_knopp): K = exp(X/reg), u = 1/N, v = b / K^T u, u = a / K v; f = reg log u.
let sinkhornKnopp (x: float32[,]) (reg: float32) iterations =
    let n, e = Array2D.length1 x, Array2D.length2 x
    let kk = x |> Array2D.map (fun v -> MathF.Exp(v / reg))
    let a, b = 1.0f / float32 n, 1.0f / float32 e
    let u = Array.create n (1.0f / float32 n)
    let v = Array.create e (1.0f / float32 e)

    for _ in 1..iterations do
        for j in 0 .. e - 1 do
            let mutable s = 0.0f

            for i in 0 .. n - 1 do
                s <- s + kk.[i, j] * u.[i]

            v.[j] <- b / s

        for i in 0 .. n - 1 do
            let mutable s = 0.0f

            for j in 0 .. e - 1 do
                s <- s + kk.[i, j] * v.[j]

            u.[i] <- a / s

    Array.init (n * e) (fun c -> u.[c / e] * kk.[c / e, c % e] * v.[c % e]),
    Array.map (fun w -> reg * MathF.Log w) u,
    Array.map (fun w -> reg * MathF.Log w) v

let private sinkhorn = lazy (AlgorithmRegistry.Find "sinkhorn")

/// The CLI's verdict on a candidate (plan, f, g, iterations) computed by `solve` with regularization regUsed, its
/// outputs rounded to fmt; the call's inputs are the logits rounded to fmt.
let sinkhornCheck (c: SinkhornCase) fmt methodName solve (regUsed: float) =
    let x = c.X |> Array2D.map (fun v -> Precision.Round(v, fmt))
    let n, e = Array2D.length1 x, Array2D.length2 x
    let x32 = x |> Array2D.map float32
    let flat = Array.init (n * e) (fun f -> x32.[f / e, f % e])

    let parameters =
        [
            KeyValuePair("method", methodName)
            KeyValuePair("reg", c.Reg.ToString("R", Globalization.CultureInfo.InvariantCulture))
            KeyValuePair("max_iter", string c.Iterations)
            KeyValuePair("tol", "0")
        ]

    let call =
        sinkhorn.Value.Bind(readOnlyDict [ "logits", NdArray.Create(flat, n, e) ], parameters, "test")

    let expected = sinkhorn.Value.RunReference call
    let plan, f, g = solve x32 (float32 regUsed) c.Iterations
    let r (v: float32[]) = v |> Array.map (round fmt)

    let candidate =
        readOnlyDict
            [
                "plan", NdArray.Create(r plan, n, e)
                "f", NdArray.Create(r f, n)
                "g", NdArray.Create(r g, e)
                "iterations", NdArray.Scalar c.Iterations
            ]

    sinkhorn.Value.Check(call, expected, candidate, "candidate")

let private showSinkhorn (c: SinkhornCase) =
    sprintf "N=%d E=%d reg=%g (max|M|/reg=%g) T=%d seed=%d" (Array2D.length1 c.X) (Array2D.length2 c.X) c.Reg c.Ratio c.Iterations c.Seed

let sinkhornCandidates =
    [
        "log unscaled, sequential lse", "log", sinkhornUnscaled
        "log in units of reg, pairwise lse", "log", sinkhornScaled
        "knopp scalings", "knopp", sinkhornKnopp
    ]

let ``sinkhorn: three float32 implementations rounded to float32, float16 or bfloat16 pass`` () =
    Prop.forAll arbSinkhorn (fun c ->
        for fmt, _ in formats do
            for name, methodName, solve in sinkhornCandidates do
                for report in sinkhornCheck c fmt methodName solve c.Reg do
                    Assert.That(report.Passed, $"{showSinkhorn c} {fmt} {name}: {report.Summary()} {report.Detail}"))

let ``sinkhorn: reg off by (1 + d) fails (d = 1e-3 float32, 1e-2 float16 and bfloat16)`` () =
    // With N = 1 or E = 1 the marginals alone fix the plan (G = a b^T), whatever reg: not detectable in principle.
    let cases =
        sinkhornCase
        |> Gen.filter (fun c -> Array2D.length1 c.X >= 2 && Array2D.length2 c.X >= 2)
        |> Arb.fromGen

    Prop.forAll cases (fun c ->
        for fmt, d in formats do
            for sign in [ -1.0; 1.0 ] do
                // Detectable in principle only where the wrong reg moves the plan by more than a few roundings of
                // the format: a nearly degenerate plan (max|M|/reg large on a tiny problem, entries e^-30 beside 1/2)
                // moves by less than float16 can show, and its potentials barely depend on reg.
                let x32 = c.X |> Array2D.map (fun v -> float32 (Precision.Round(v, fmt)))

                let moved =
                    let p0, f0, g0 = sinkhornUnscaled x32 (float32 c.Reg) c.Iterations
                    let p1, f1, g1 = sinkhornUnscaled x32 (float32 (c.Reg * (1.0 + sign * d))) c.Iterations
                    let u = Precision.UnitRoundoff fmt

                    let beyond (a: float32[]) (b: float32[]) =
                        let scale = a |> Array.map (fun v -> abs (float v)) |> Array.max
                        Array.map2 (fun (v: float32) (w: float32) -> abs (float v - float w)) a b |> Array.max > 8.0 * u * scale
                    // The plan only: potentials are judged up to a common shift, which a wrong reg mostly is here.
                    ignore (f0, g0, f1, g1)
                    beyond p0 p1

                if moved then
                    let reports = sinkhornCheck c fmt "log" sinkhornUnscaled (c.Reg * (1.0 + sign * d))
                    Assert.That(reports |> Seq.exists (fun r -> not r.Passed), $"{showSinkhorn c} {fmt} reg x(1 + {sign * d}) passed"))

// ---------------------------------------------------------------------------------------------------------------
// SoftTopk: float32 threshold by bisection (sequential and pairwise sums), the float64 result rounded, rounded to fmt.

[<StructuredFormatDisplay("{Show}")>]
type SoftCase =
    {
        SX: float[,]
        SK: int
        Tau: float
        Seed: int
    }

    member c.Show =
        sprintf "N=%d E=%d k=%d tau=%g seed=%d" (Array2D.length1 c.SX) (Array2D.length2 c.SX) c.SK c.Tau c.Seed

let softCase =
    gen {
        let! t = Gen.choose (0, 1000)
        let! e = Gen.elements [ 2; 3; 4; 8; 16; 64 ]
        let n = min (skewedN t) (1 <<< 20 / e)
        let! k = Gen.choose (1, e - 1)
        let! sigma = Gen.elements [ 0.5; 1.0; 2.0 ]
        let! tau = Gen.elements [ 0.03; 0.1; 0.3; 1.0 ]
        let! seed = Gen.choose (0, Int32.MaxValue - 1)

        return
            {
                SX = RoutingToleranceProperties.routerLogits seed n e sigma
                SK = k
                Tau = tau * sigma
                Seed = seed
            }
    }

let private arbSoft = Arb.fromGen softCase

/// y = sigmoid((x - t)/tau) with t found by float32 bisection on sum y = k (100 halvings of a bracket).
let softBisect (usePairwise: bool) (x: float32[,]) (k: int) (tau: float32) =
    let n, e = Array2D.length1 x, Array2D.length2 x
    let y = Array.zeroCreate<float32> (n * e)

    for i in 0 .. n - 1 do
        let row = Array.init e (fun j -> x.[i, j])
        let sigm t = row |> Array.map (fun v -> 1.0f / (1.0f + MathF.Exp(-(v - t) / tau)))

        let sum (v: float32[]) =
            if usePairwise then
                pairwise (Array.rev v) 0 v.Length
            else
                Array.fold (+) 0.0f v

        let mutable lo = Array.min row - 50.0f * tau - 1.0f
        let mutable hi = Array.max row + 50.0f * tau + 1.0f

        for _ in 1..100 do
            let mid = 0.5f * (lo + hi)
            if sum (sigm mid) > float32 k then lo <- mid else hi <- mid

        sigm (0.5f * (lo + hi)) |> Array.iteri (fun j v -> y.[i * e + j] <- v)

    y

/// The entropic operator in float32 by its threshold form (theorem softtopk.entropic-is-threshold): xh = (x - min) /
/// (max - min) in float32, then the float32 bisection of softBisect at tau/2; a constant row gives k/E.
let entropicViaThreshold (usePairwise: bool) (x: float32[,]) (k: int) (tau: float32) =
    let n, e = Array2D.length1 x, Array2D.length2 x
    let y = Array.zeroCreate<float32> (n * e)

    for i in 0 .. n - 1 do
        let row = Array.init e (fun j -> x.[i, j])
        let m, r = Array.min row, Array.max row - Array.min row

        if r = 0.0f then
            for j in 0 .. e - 1 do
                y.[i * e + j] <- float32 k / float32 e
        else
            let xh = Array2D.init 1 e (fun _ j -> (row.[j] - m) / r)
            softBisect usePairwise xh k (0.5f * tau) |> Array.iteri (fun j v -> y.[i * e + j] <- v)

    y

/// The entropic operator in float32 by a safeguarded Newton iteration on the column potential h = g_1 - g_0 of the
/// two-anchor transport problem: y_e = sigma((2 xh_e - 1 + h) / tau), in log-domain form y_e = exp(-softplus(-z_e)),
/// sum_e y_e = k; Newton steps of F(h) = sum y - k with F' = sum y (1 - y) / tau, bisection when a step leaves the
/// bracket; sums in descending order of e.
let entropicNewton (x: float32[,]) (k: int) (tau: float32) =
    let n, e = Array2D.length1 x, Array2D.length2 x
    let y = Array.zeroCreate<float32> (n * e)

    let logSigmoid (z: float32) =
        if z > 0.0f then
            -MathF.Log(1.0f + MathF.Exp(-z))
        else
            z - MathF.Log(1.0f + MathF.Exp z)

    for i in 0 .. n - 1 do
        let row = Array.init e (fun j -> x.[i, j])
        let m, r = Array.min row, Array.max row - Array.min row

        if r = 0.0f then
            for j in 0 .. e - 1 do
                y.[i * e + j] <- float32 k / float32 e
        else
            let c = row |> Array.map (fun v -> 2.0f * ((v - m) / r) - 1.0f)
            let ys h = c |> Array.map (fun cj -> MathF.Exp(logSigmoid ((cj + h) / tau)))

            let f h =
                let v = ys h
                let mutable s, ds = 0.0f, 0.0f

                for j in e - 1 .. -1 .. 0 do
                    s <- s + v.[j]
                    ds <- ds + v.[j] * (1.0f - v.[j]) / tau

                s - float32 k, ds

            let mutable lo, hi = -1.0f - 60.0f * tau, 1.0f + 60.0f * tau
            let mutable h = 0.0f

            for _ in 1..200 do
                let fh, dfh = f h
                if fh > 0.0f then hi <- min hi h else lo <- max lo h
                let step = if dfh > 0.0f then h - fh / dfh else Single.NaN

                h <-
                    if step > lo && step < hi && not (Single.IsNaN step) then
                        step
                    else
                        0.5f * (lo + hi)

            ys h |> Array.iteri (fun j v -> y.[i * e + j] <- v)

    y

let private softOptions (c: SoftCase) methodKind tau = SoftTopKOptions(K = c.SK, Tau = tau, Method = methodKind)

let softVerdict (c: SoftCase) fmt methodKind (y: float32[]) =
    let x = c.SX |> Array2D.map (fun v -> Precision.Round(v, fmt))
    let reference = SoftTopK.Compute(x, softOptions c methodKind c.Tau)
    let flat (m: float[,]) = Array.init m.Length (fun f -> m.[f / Array2D.length2 m, f % Array2D.length2 m])
    let yr = y |> Array.map (round fmt >> float)

    SoftTopKValidator.Validate(x, softOptions c methodKind c.Tau, flat reference.Y, null, yr, null, (fun _ -> fmt))
    |> Seq.exactlyOne

let private softCandidates (c: SoftCase) fmt methodKind tau =
    let x = c.SX |> Array2D.map (fun v -> Precision.Round(v, fmt))
    let x32 = x |> Array2D.map float32

    let exact () =
        let r = SoftTopK.Compute(x, softOptions c methodKind tau)
        Array.init r.Y.Length (fun f -> float32 r.Y.[f / Array2D.length2 r.Y, f % Array2D.length2 r.Y])

    if methodKind = SoftTopKMethod.Threshold then
        [
            "float32 bisection, sequential sum", softBisect false x32 c.SK (float32 tau)
            "float32 bisection, pairwise reversed sum", softBisect true x32 c.SK (float32 tau)
            "float64 result rounded", exact ()
        ]
    else
        [
            "float64 result rounded", exact ()
            "float32 threshold form on xh at tau/2, bisection, sequential sum", entropicViaThreshold false x32 c.SK (float32 tau)
            "float32 threshold form on xh at tau/2, bisection, pairwise reversed sum", entropicViaThreshold true x32 c.SK (float32 tau)
            "float32 Newton on the column potential, log-domain sigmoid", entropicNewton x32 c.SK (float32 tau)
        ]

let private showSoft (c: SoftCase) =
    sprintf "N=%d E=%d k=%d tau=%g seed=%d" (Array2D.length1 c.SX) (Array2D.length2 c.SX) c.SK c.Tau c.Seed

let ``softtopk: float32 computations rounded to float32, float16 or bfloat16 pass`` () =
    Prop.forAll arbSoft (fun c ->
        for methodKind in [ SoftTopKMethod.Threshold; SoftTopKMethod.Entropic ] do
            let c =
                if methodKind = SoftTopKMethod.Entropic then
                    { c with SX = c.SX.[0 .. min 64 (Array2D.length1 c.SX) - 1, *] }
                else
                    c

            for fmt, _ in formats do
                for name, y in softCandidates c fmt methodKind c.Tau do
                    let r = softVerdict c fmt methodKind y
                    Assert.That(r.Passed, $"{showSoft c} {methodKind} {fmt} {name}: {r.Summary()} {r.Detail}"))

let ``softtopk: tau off by (1 + d) fails (d = 1e-3 float32, 1e-2 float16 and bfloat16)`` () =
    Prop.forAll arbSoft (fun c ->
        for methodKind in [ SoftTopKMethod.Threshold; SoftTopKMethod.Entropic ] do
            let c =
                if methodKind = SoftTopKMethod.Entropic then
                    { c with SX = c.SX.[0 .. min 64 (Array2D.length1 c.SX) - 1, *] }
                else
                    c

            for fmt, d in formats do
                for sign in [ -1.0; 1.0 ] do
                    let candidates = softCandidates c fmt methodKind (c.Tau * (1.0 + sign * d))
                    // Detectable in principle: the exact perturbed y (float64, unrounded) exceeds twice the allowance
                    // somewhere; the change of y_e is at most d |z_e| y_e (1 - y_e) (z the sigmoid's argument), which a
                    // small row (E = 3, entries near the threshold) can keep under the rounding u_v y_e.
                    let x = c.SX |> Array2D.map (fun v -> Precision.Round(v, fmt))
                    let perturbed = SoftTopK.Compute(x, softOptions c methodKind (c.Tau * (1.0 + sign * d))).Y
                    let reference = SoftTopK.Compute(x, softOptions c methodKind c.Tau).Y
                    let flat (m: float[,]) = Array.init m.Length (fun f -> m.[f / Array2D.length2 m, f % Array2D.length2 m])

                    let allowed =
                        SoftTopKValidator.Validate(
                            x,
                            softOptions c methodKind c.Tau,
                            flat reference,
                            null,
                            flat perturbed,
                            null,
                            (fun _ -> fmt)
                        )
                        |> Seq.exactlyOne

                    if allowed.Margin |> Option.ofNullable |> Option.exists (fun m -> m >= 2.0) then
                        let r = softVerdict c fmt methodKind (candidates |> List.head |> snd)
                        Assert.That(r.Passed, Is.False, $"{showSoft c} {methodKind} {fmt} tau x(1 + {sign * d}) passed: {r.Summary()}"))

// ---------------------------------------------------------------------------------------------------------------
// Objectives: the sum of the chosen scores in float32 (sequential, pairwise, blocked, reversed), rounded to fmt.

[<StructuredFormatDisplay("{Show}")>]
type ObjectiveCase =
    {
        Scores: float[,]
        Seed: int
    }

    member c.Show = sprintf "N=%d E=%d seed=%d" (Array2D.length1 c.Scores) (Array2D.length2 c.Scores) c.Seed

let objectiveCase =
    gen {
        let! t = Gen.choose (0, 1000)
        let! e = Gen.elements [ 2; 4; 8; 16; 64 ]
        let! sigma = Gen.elements [ 0.1; 1.0; 3.0 ]
        let! seed = Gen.choose (0, Int32.MaxValue - 1)
        return { Scores = RoutingToleranceProperties.routerLogits seed (skewedN t) e sigma; Seed = seed }
    }

let private arbObjective = Arb.fromGen objectiveCase

/// Each token's best and second-best score (the objective of the greedy routing, and the realistic bug's).
let private bestTwo (s: float[,]) i =
    let row = Array.init (Array2D.length2 s) (fun j -> s.[i, j]) |> Array.sortDescending
    row.[0], (if row.Length > 1 then row.[1] else row.[0])

let private sums32 (terms: float[]) =
    let v = terms |> Array.map float32

    [
        "sequential", Array.fold (+) 0.0f v
        "pairwise", pairwise v 0 v.Length
        "reversed", Array.foldBack (fun x s -> s + x) v 0.0f
        "blocked 256", v |> Array.chunkBySize 256 |> Array.map (Array.fold (+) 0.0f) |> Array.fold (+) 0.0f
    ]

let ``objective: float32 sums in four orders rounded to the format pass; one token on a worse expert fails beyond the rounding`` () =
    Prop.forAll arbObjective (fun c ->
        for fmt, _ in formats do
            let s = c.Scores |> Array2D.map (fun v -> Precision.Round(v, fmt))
            let n, e = Array2D.length1 s, Array2D.length2 s
            let terms = Array.init n (fun i -> fst (bestTwo s i))
            let exact = Array.sum terms
            let policy = MaxScoreValidator.ObjectivePolicy(terms, e, fmt)
            // (A float16 objective beyond 65504 overflows: no float16 candidate can report it.)
            let representable = abs exact < 0.9 * Precision.MaxFinite fmt

            for name, v in (if representable then sums32 terms else []) do
                let r =
                    policy.Compare("objective", ReadOnlySpan [| Precision.Round(float v, fmt) |], ReadOnlySpan [| exact |], [||])

                Assert.That(r.Passed, $"N={n} E={e} seed={c.Seed} {fmt} {name}: {r.Summary()}")
            // The bug: token i routed to its second choice. Detectable exactly when its change exceeds the allowance.
            let allowed = policy.Atol + policy.Rtol * abs exact

            for i in [ 0; n / 2; n - 1 ] do
                let best, second = bestTwo s i
                let moved = Array.copy terms
                moved.[i] <- second
                let v = Precision.Round(float (snd (sums32 moved).Head), fmt)
                let r = policy.Compare("objective", ReadOnlySpan [| v |], ReadOnlySpan [| exact |], [||])

                if representable && best - second > 2.0 * allowed + Precision.UnitRoundoff(fmt) * abs exact then
                    Assert.That(
                        r.Passed,
                        Is.False,
                        $"N={n} E={e} seed={c.Seed} {fmt} token {i} moved by {best - second} passed (allowed {allowed})"
                    ))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "harness/tolerance/routing"
        "RoutingToleranceProperties2"
        [
            Proofs.prop
                [ "sinkhorn.running-bound-fair" ]
                "sinkhorn: three float32 implementations rounded to float32, float16 or bfloat16 pass"
                ``sinkhorn: three float32 implementations rounded to float32, float16 or bfloat16 pass``
            Proofs.prop
                [ "sinkhorn.running-bound-tight" ]
                "sinkhorn: reg off by (1 + d) fails (d = 1e-3 float32, 1e-2 float16 and bfloat16)"
                ``sinkhorn: reg off by (1 + d) fails (d = 1e-3 float32, 1e-2 float16 and bfloat16)``
            Proofs.prop
                [ "softtopk.running-bound-fair" ]
                "softtopk: float32 computations rounded to float32, float16 or bfloat16 pass"
                ``softtopk: float32 computations rounded to float32, float16 or bfloat16 pass``
            Proofs.prop
                [ "softtopk.running-bound-tight" ]
                "softtopk: tau off by (1 + d) fails (d = 1e-3 float32, 1e-2 float16 and bfloat16)"
                ``softtopk: tau off by (1 + d) fails (d = 1e-3 float32, 1e-2 float16 and bfloat16)``
            Proofs.prop
                [ "maxscore.objective-running-bound" ]
                "objective: float32 sums in four orders rounded to the format pass; one token on a worse expert fails beyond the rounding"
                ``objective: float32 sums in four orders rounded to the format pass; one token on a worse expert fails beyond the rounding``
        ]
