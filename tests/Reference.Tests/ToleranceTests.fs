/// Properties of the tolerance policies and their comparison reports; see proofs/tolerance.md.
module Reference.Tests.ToleranceTests

open System
open System.Collections.Generic
open System.Globalization
open System.Text.RegularExpressions
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Numerics
open Reference.Harness.Comparison
open Reference.Tests.Proofs

// ---------------------------------------------------------------------------------------------------------------
// Helpers

let private show (x: float) = x.ToString("R", CultureInfo.InvariantCulture)

let private expect what cond =
    if not cond then
        failwith what

let private expectEqual what (got: 'T) (expected: 'T) =
    if got <> expected then
        failwithf "%s: got %A, expected %A" what got expected

let private sameBits (a: float) (b: float) = BitConverter.DoubleToInt64Bits a = BitConverter.DoubleToInt64Bits b

/// Compares with any policy; the baseline policy gets the reference itself as its baseline (so its bound is the floor).
let private compare (policy: TolerancePolicy) (candidate: float[]) (expected: float[]) (shape: int[]) =
    match policy with
    | :? BaselinePolicy as b -> b.Compare("out", ReadOnlySpan candidate, ReadOnlySpan expected, ReadOnlySpan expected, shape)
    | p -> p.Compare("out", ReadOnlySpan candidate, ReadOnlySpan expected, shape)

/// The Euclidean norm, computed the plain way (fine for the moderate values used here).
let private norm (xs: float seq) = sqrt (Seq.sumBy (fun x -> x * x) xs)

/// A value of candidate index i that every policy must reject against expected.[i] (finite arrays).
let private beyond (policy: TolerancePolicy) (expected: float[]) i =
    let r = expected.[i]

    match policy with
    | :? ExactPolicy -> Math.BitIncrement r
    | :? AllClosePolicy as p -> r + 4.0 * (p.Atol + p.Rtol * abs r)
    | :? RelativeRmsPolicy as p -> r + 2.0 * p.Bound * norm expected + 1.0
    | :? BaselinePolicy as p -> r + 2.0 * p.Floor(ReadOnlySpan expected) + 1.0
    | _ -> failwith "unknown policy"

// ---------------------------------------------------------------------------------------------------------------
// Generators

let private formats =
    [ NumberFormat.Float64; NumberFormat.Float32; NumberFormat.Float16; NumberFormat.BFloat16 ]

/// Shapes with awkward sizes, rank 0 to 3 (rank 0 is a scalar: one element).
let private shapeGen =
    gen {
        let! rank = Gen.choose (0, 3)
        return! Gen.arrayOfLength rank (Gen.elements [ 1; 2; 3; 7 ])
    }

let private product (shape: int[]) = Array.fold (*) 1 shape

/// Finite values in [-100, 100], with exact zeros, small integers and repeated values mixed in.
let private valueGen =
    Gen.frequency
        [
            6, Gen.choose (-1_000_000, 1_000_000) |> Gen.map (fun n -> float n / 10_000.0)
            2, Gen.choose (-8, 8) |> Gen.map float
            1, Gen.elements [ 0.0; -0.0; 100.0; -100.0; 1e-300 ]
        ]

let private policyGen =
    Gen.oneof
        [
            Gen.constant (ExactPolicy() :> TolerancePolicy)
            Gen.elements formats |> Gen.map (fun f -> AllClosePolicy.For f :> TolerancePolicy)
            Gen.map2
                (fun a r -> AllClosePolicy(a, r) :> TolerancePolicy)
                (Gen.elements [ 1e-8; 1e-6; 1e-3; 1e-2 ])
                (Gen.elements [ 0.0; 1e-7; 1e-3; 1e-1 ])
            Gen.elements [ 0.0; 1e-4; 0.01; 0.5 ] |> Gen.map (fun b -> RelativeRmsPolicy b :> TolerancePolicy)
            Gen.map2 (fun f k -> BaselinePolicy(f, k) :> TolerancePolicy) (Gen.elements formats) (Gen.elements [ 1.0; 2.0; 3.5 ])
        ]

/// A shape and a finite array of that shape.
let private arrayGen =
    shapeGen
    |> Gen.bind (fun shape -> Gen.arrayOfLength (product shape) valueGen |> Gen.map (fun xs -> shape, xs))

/// The numpy text of a multi-index, written directly from the index (not from a flat position).
let private indexText (index: int list) =
    match index with
    | [ i ] -> $"({i},)"
    | _ -> "(" + String.Join(", ", index) + ")"

/// The C-order flat position of a multi-index (Horner's rule over the shape).
let private flatOf (shape: int[]) (index: int list) = List.fold2 (fun acc i n -> acc * int64 n + int64 i) 0L index (List.ofArray shape)

/// A shape, an array, and one multi-index into it.
let private arrayAndIndexGen =
    gen {
        let! shape, xs = arrayGen
        let! index = shape |> Array.map (fun n -> Gen.choose (0, n - 1)) |> Gen.sequenceToList
        return shape, xs, index
    }

// ---------------------------------------------------------------------------------------------------------------
// Every policy: equal arrays, one perturbation, NaN and Inf

let ``every policy passes equal arrays with no mismatches`` () =
    // Equal arrays, sometimes with NaN and infinities in the same places on both sides.
    let withSpecials =
        arrayGen
        |> Gen.bind (fun (shape, xs) ->
            Gen.arrayOfLength
                xs.Length
                (Gen.frequency [ 8, Gen.constant None; 1, Gen.elements [ Some nan; Some infinity; Some -infinity ] ])
            |> Gen.map (fun specials -> shape, Array.map2 (fun x s -> defaultArg s x) xs specials))

    Prop.forAll (Arb.fromGen (Gen.zip policyGen withSpecials)) (fun (policy, (shape, xs)) ->
        let report = compare policy (Array.copy xs) xs shape
        expect $"{policy.Name}: {report.Summary()}" report.Passed
        expectEqual "MismatchCount" report.MismatchCount 0L
        expectEqual "NaN/Inf" (report.NaNMismatches, report.InfMismatches) (0L, 0L)
        expectEqual "FirstMismatches" report.FirstMismatches.Count 0
        expectEqual "Count" report.Count (int64 (product shape))
        expectEqual "MaxAbsError" report.MaxAbsError 0.0
        expectEqual "PolicyName" report.PolicyName policy.Name)

let ``one element beyond the bound fails with one mismatch at its index`` () =
    Prop.forAll (Arb.fromGen (Gen.zip policyGen arrayAndIndexGen)) (fun (policy, (shape, expected, index)) ->
        let flat = flatOf shape index
        let candidate = Array.copy expected
        candidate.[int flat] <- beyond policy expected (int flat)
        let report = compare policy candidate expected shape
        expect $"{policy.Name} passed a perturbed array: {report.Summary()}" (not report.Passed)
        expectEqual "MismatchCount" report.MismatchCount 1L
        expectEqual "NaN/Inf" (report.NaNMismatches, report.InfMismatches) (0L, 0L)

        expectEqual
            "FirstMismatches"
            (report.FirstMismatches |> Seq.map (fun m -> m.FlatIndex, m.Index, m.Got, m.Expected) |> List.ofSeq)
            [ flat, indexText index, candidate.[int flat], expected.[int flat] ]
        // The allowance listed with a mismatch (policies with an elementwise bound) is below the error it rejected.
        for m in report.FirstMismatches do
            if m.Allowed.HasValue then
                expect $"allowed {m.Allowed.Value} < |error| at {m.Index}" (m.Allowed.Value < abs (m.Got - m.Expected)))

let ``NaN and Inf mismatches are counted apart and fail`` () =
    // Each element gets one of: unchanged; NaN in the candidate only; NaN in the reference only; NaN on both sides;
    // an infinity in the candidate only; the same infinity on both; opposite infinities.
    let cases =
        arrayGen
        |> Gen.bind (fun (shape, xs) ->
            Gen.arrayOfLength xs.Length (Gen.frequency [ 6, Gen.constant 0; 1, Gen.choose (1, 6) ])
            |> Gen.map (fun kinds -> shape, xs, kinds))

    Prop.forAll (Arb.fromGen (Gen.zip policyGen cases)) (fun (policy, (shape, xs, kinds)) ->
        let candidate, expected = Array.copy xs, Array.copy xs

        for i in 0 .. xs.Length - 1 do
            match kinds.[i] with
            | 1 -> candidate.[i] <- nan
            | 2 -> expected.[i] <- nan
            | 3 ->
                candidate.[i] <- nan
                expected.[i] <- nan
            | 4 -> candidate.[i] <- -infinity
            | 5 ->
                candidate.[i] <- infinity
                expected.[i] <- infinity
            | 6 ->
                candidate.[i] <- infinity
                expected.[i] <- -infinity
            | _ -> ()

        let nanCount = kinds |> Array.filter (fun k -> k = 1 || k = 2) |> Array.length |> int64
        let infCount = kinds |> Array.filter (fun k -> k = 4 || k = 6) |> Array.length |> int64
        let report = compare policy candidate expected shape
        expectEqual "NaNMismatches" report.NaNMismatches nanCount
        expectEqual "InfMismatches" report.InfMismatches infCount
        expectEqual "MismatchCount" report.MismatchCount (nanCount + infCount)
        expectEqual "Passed" report.Passed (nanCount + infCount = 0L)
        let listed = report.FirstMismatches |> Seq.map (fun m -> m.FlatIndex) |> List.ofSeq

        let wanted =
            kinds
            |> Array.indexed
            |> Array.filter (fun (_, k) -> k = 1 || k = 2 || k = 4 || k = 6)
            |> Array.map (fst >> int64)
            |> Array.truncate 5
            |> List.ofArray

        expectEqual "FirstMismatches" listed wanted)

// ---------------------------------------------------------------------------------------------------------------
// allclose

let ``allclose passes exactly at the bound and fails just beyond`` () =
    // atol = 2^-a, rtol = 2^-b, r = m 2^k: the bound, r +- bound and r +- (bound + 2^-30) are exact in double.
    let cases =
        gen {
            let! a = Gen.choose (1, 16)
            let! b = Gen.choose (1, 16)
            let! m = Gen.choose (-64, 64)
            let! k = Gen.choose (-6, 6)
            let! sign = Gen.elements [ 1.0; -1.0 ]
            return a, b, float m * Math.ScaleB(1.0, k), sign
        }

    Prop.forAll (Arb.fromGen cases) (fun (a, b, r, sign) ->
        let policy = AllClosePolicy(Math.ScaleB(1.0, -a), Math.ScaleB(1.0, -b))
        let bound = policy.Atol + policy.Rtol * abs r
        let at = r + sign * bound
        let past = r + sign * (bound + Math.ScaleB(1.0, -30))
        expectEqual "exact arithmetic" (abs (at - r), abs (past - r) - Math.ScaleB(1.0, -30)) (bound, bound)
        let pass = policy.Compare("w", ReadOnlySpan [| at |], ReadOnlySpan [| r |], [| 1 |])
        let fail = policy.Compare("w", ReadOnlySpan [| past |], ReadOnlySpan [| r |], [| 1 |])
        expect $"{policy.Name}: |{show at} - {show r}| = bound must pass" pass.Passed
        expect $"{policy.Name}: {show past} beyond the bound must fail" (not fail.Passed && fail.MismatchCount = 1L))

// ---------------------------------------------------------------------------------------------------------------
// baseline

/// A baseline from a real computation: y = A x (A of shape [rows, cols]) in double, and naively in fmt,
/// with the inputs first rounded to fmt (as a candidate's inputs would be stored).
let private matVecGen =
    gen {
        let! fmt = Gen.elements formats
        let! rows = Gen.elements [ 1; 2; 7; 13 ]
        let! cols = Gen.elements [ 1; 3; 7; 33; 97 ]
        // Values up to 100/16, so that even float16 (largest value 65504) cannot overflow: |y_i| <= 97 * 6.25^2.
        let small = valueGen |> Gen.map (fun v -> v / 16.0)
        let! a = Gen.arrayOfLength (rows * cols) small
        let! x = Gen.arrayOfLength cols small
        let lp = LowPrecision.For fmt
        let a = Array.map lp.Round a
        let x = Array.map lp.Round x

        let ref64 =
            Array.init rows (fun i -> Seq.sum (seq { for j in 0 .. cols - 1 -> a.[i * cols + j] * x.[j] }))

        let baseline = Array.init rows (fun i -> lp.Dot(ReadOnlySpan(a, i * cols, cols), ReadOnlySpan x))
        return fmt, rows, ref64, baseline
    }

let ``baseline passes the baseline itself and the rounded reference`` () =
    let cases = Gen.zip matVecGen (Gen.elements [ 1.0; 1.5; 2.0; 4.0 ])

    Prop.forAll (Arb.fromGen cases) (fun ((fmt, rows, ref64, baseline), factor) ->
        let policy = BaselinePolicy(fmt, factor)

        let asBase =
            policy.Compare("y", ReadOnlySpan baseline, ReadOnlySpan ref64, ReadOnlySpan baseline, [| rows |])

        expect $"the baseline itself must pass: {asBase.Summary()} {asBase.Detail}" asBase.Passed
        let rounded = ref64 |> Array.map (fun r -> Precision.Round(r, fmt))

        let asRounded =
            policy.Compare("y", ReadOnlySpan rounded, ReadOnlySpan ref64, ReadOnlySpan baseline, [| rows |])

        expect $"the rounded reference must pass: {asRounded.Summary()} {asRounded.Detail}" asRounded.Passed)

let ``baseline bound is monotone in the factor`` () =
    let cases = Gen.zip3 matVecGen (Gen.choose (0, 40)) (Gen.choose (0, 40))

    Prop.forAll (Arb.fromGen cases) (fun ((fmt, rows, ref64, baseline), k1, k2) ->
        let f1, f2 = float (min k1 k2) / 4.0, float (max k1 k2) / 4.0
        let p1, p2 = BaselinePolicy(fmt, f1), BaselinePolicy(fmt, f2)
        let b1 = p1.Bound(ReadOnlySpan ref64, ReadOnlySpan baseline)
        let b2 = p2.Bound(ReadOnlySpan ref64, ReadOnlySpan baseline)
        expect $"factor {f1} gives bound {show b1} > {show b2} of factor {f2}" (b1 <= b2)
        // Hence a candidate accepted at the smaller factor is accepted at the larger: try one at the first bound.
        let candidate = Array.map (fun r -> r + b1) ref64
        let r1 = p1.Compare("y", ReadOnlySpan candidate, ReadOnlySpan ref64, ReadOnlySpan baseline, [| rows |])
        let r2 = p2.Compare("y", ReadOnlySpan candidate, ReadOnlySpan ref64, ReadOnlySpan baseline, [| rows |])
        expect "accepted at the smaller factor, rejected at the larger" (not r1.Passed || r2.Passed))

let ``baseline floor is twice the representation error of the reference`` () =
    Prop.forAll (Arb.fromGen matVecGen) (fun (fmt, rows, ref64, baseline) ->
        let policy = BaselinePolicy(fmt)
        let floor = policy.Floor(ReadOnlySpan ref64)
        let worst = ref64 |> Array.map (fun r -> abs (Precision.Round(r, fmt) - r)) |> Array.max
        expectEqual "floor" floor (2.0 * worst)
        // The floor is at most 2u max|ref| in the normal range, and the bound is factor * base error + floor.
        let top = ref64 |> Array.map abs |> Array.max

        expect
            "floor <= 2u max|ref| + 2 * smallest subnormal spacing"
            (floor
             <= 2.0 * Precision.UnitRoundoff fmt * top + Precision.Epsilon fmt * Precision.SmallestNormal fmt)

        let baseError = BaselinePolicy.BaseError(ReadOnlySpan ref64, ReadOnlySpan baseline)
        expectEqual "base error" baseError (Array.map2 (fun b r -> abs (b - r)) baseline ref64 |> Array.max)
        expectEqual "bound" (policy.Bound(ReadOnlySpan ref64, ReadOnlySpan baseline)) (2.0 * baseError + floor)

        let report =
            policy.Compare("y", ReadOnlySpan ref64, ReadOnlySpan ref64, ReadOnlySpan baseline, [| rows |])

        let m = Regex.Match(report.Detail, @"floor=(\S+)")

        expect
            $"Detail names the floor at full precision: {report.Detail}"
            (m.Success && sameBits (Double.Parse(m.Groups.[1].Value, CultureInfo.InvariantCulture)) floor))

// ---------------------------------------------------------------------------------------------------------------
// relative-rms

let ``relative-rms verdict is invariant under scaling by a power of two`` () =
    let cases =
        gen {
            let! shape, r = arrayGen
            let! noise = Gen.arrayOfLength r.Length (Gen.elements [ 0.0; 1e-4; -3e-3; 0.05; 1.0 ])
            let! bound = Gen.elements [ 1e-4; 1e-3; 0.01; 0.1 ]
            let! k = Gen.choose (-30, 30)
            return shape, r, Array.map2 (+) r noise, bound, k
        }

    Prop.forAll (Arb.fromGen cases) (fun (shape, r, c, bound, k) ->
        let policy = RelativeRmsPolicy bound
        let scale = Math.ScaleB(1.0, k)
        // 1e-300 in the generator would underflow when scaled down; keep to the normal range.
        let r = r |> Array.map (fun v -> if abs v < 1e-200 then 0.0 else v)
        let c = c |> Array.map (fun v -> if abs v < 1e-200 then 0.0 else v)
        let plain = policy.Compare("out", ReadOnlySpan c, ReadOnlySpan r, shape)

        let scaled =
            policy.Compare("out", ReadOnlySpan(Array.map ((*) scale) c), ReadOnlySpan(Array.map ((*) scale) r), shape)

        expectEqual "verdict" scaled.Passed plain.Passed
        expectEqual "mismatches" scaled.MismatchCount plain.MismatchCount
        let e1 = RelativeRmsPolicy.RelativeError(ReadOnlySpan c, ReadOnlySpan r)

        let e2 =
            RelativeRmsPolicy.RelativeError(ReadOnlySpan(Array.map ((*) scale) c), ReadOnlySpan(Array.map ((*) scale) r))

        expect $"ratio {show e1} vs scaled {show e2}" (sameBits e1 e2))

let ``relative-rms verdict follows the norm ratio and a failure reports a mismatch`` () =
    let cases =
        gen {
            let! shape, r = arrayGen
            let! noise = Gen.arrayOfLength r.Length (Gen.elements [ 0.0; 1e-4; -3e-3; 0.05; 1.0 ])
            let! bound = Gen.elements [ 0.0; 1e-4; 1e-3; 0.01; 0.1 ]
            return shape, r, Array.map2 (+) r noise, bound
        }

    Prop.forAll (Arb.fromGen cases) (fun (shape, r, c, bound) ->
        let report = RelativeRmsPolicy(bound).Compare("out", ReadOnlySpan c, ReadOnlySpan r, shape)
        // The ratio computed the plain way, independently of the policy's scaled sums.
        let d = norm (Array.map2 (-) c r)
        let n = norm r

        let ratio =
            if n = 0.0 then
                (if d = 0.0 then 0.0 else infinity)
            else
                d / n

        let nearBoundary = abs (ratio - bound) <= 1e-12 * bound

        if not nearBoundary then
            expectEqual $"verdict (ratio {show ratio}, bound {show bound})" report.Passed (ratio <= bound)

        expect "a failed comparison reports at least one mismatch" (report.Passed || report.MismatchCount >= 1L)
        expect "a passed comparison reports none" (not report.Passed || report.MismatchCount = 0L))

// ---------------------------------------------------------------------------------------------------------------
// Reports

let ``FirstMismatches holds at most five in C order`` () =
    let cases =
        arrayGen
        |> Gen.bind (fun (shape, xs) ->
            Gen.arrayOfLength xs.Length (Gen.elements [ false; false; true ])
            |> Gen.map (fun flips -> shape, xs, flips))

    Prop.forAll (Arb.fromGen cases) (fun (shape, expected, flips) ->
        let candidate = Array.mapi (fun i r -> if flips.[i] then r + 1.0 else r) expected
        let report = ExactPolicy().Compare("slots", ReadOnlySpan candidate, ReadOnlySpan expected, shape)

        let flipped =
            [
                for i in 0 .. flips.Length - 1 do
                    if flips.[i] then
                        yield i
            ]

        expectEqual "MismatchCount" report.MismatchCount (int64 flipped.Length)
        let listed = List.ofSeq report.FirstMismatches
        expectEqual "listed count" listed.Length (min 5 flipped.Length)

        for m, i in List.zip listed (List.truncate 5 flipped) do
            expectEqual "flat index" m.FlatIndex (int64 i)
            expectEqual "got" m.Got candidate.[i]
            expectEqual "expected" m.Expected expected.[i])

let ``Summary prints the verdict and every number at full precision`` () =
    let cases =
        gen {
            let! policy = policyGen
            let! shape, expected = arrayGen
            let! noise = Gen.arrayOfLength expected.Length (Gen.elements [ 0.0; 1.0 / 3.0; 1e-7; Math.PI; -2.0 / 7.0 ])
            return policy, shape, expected, Array.map2 (+) expected noise
        }

    Prop.forAll (Arb.fromGen cases) (fun (policy, shape, expected, candidate) ->
        let report = compare policy candidate expected shape
        let line = report.Summary()

        let m =
            Regex.Match(line, @"^(PASS|FAIL) out (.+) max_abs=(\S+) max_rel=(\S+) mismatches=(\d+)/(\d+)( margin=(\S+))?$")

        expect $"summary line shape: {line}" m.Success
        expectEqual "verdict" m.Groups.[1].Value (if report.Passed then "PASS" else "FAIL")
        expectEqual "policy" m.Groups.[2].Value policy.Name
        let parse (s: string) = Double.Parse(s, CultureInfo.InvariantCulture)
        expect $"max_abs round-trips: {line}" (sameBits (parse m.Groups.[3].Value) report.MaxAbsError)
        expect $"max_rel round-trips: {line}" (sameBits (parse m.Groups.[4].Value) report.MaxRelError)
        expectEqual "mismatches" (int64 m.Groups.[5].Value, int64 m.Groups.[6].Value) (report.MismatchCount, report.Count)
        // The margin (error / bound) is printed exactly when the policy has an elementwise bound, and it says how the
        // verdict came out: at most 1 for a pass, at least 1 for a failure (equality can come from rounding the ratio).
        expectEqual "margin printed" m.Groups.[7].Success report.Margin.HasValue

        if report.Margin.HasValue && report.NaNMismatches = 0L && report.InfMismatches = 0L then
            let margin = report.Margin.Value
            expect $"margin {margin} agrees with the verdict: {line}" (if report.Passed then margin <= 1.0 else margin >= 1.0))

let ``Summary and names round-trip every power of two`` () =
    // .NET's "R" format misprints some powers of two (2^-25 prints as 2.980232238769531E-08, which parses to the
    // double below); the report must not inherit that.
    let problems = ResizeArray()

    for k in -1074 .. 1023 do
        let p = Math.ScaleB(1.0, k)
        let back = (TolerancePolicy.Parse (RelativeRmsPolicy p).Name :?> RelativeRmsPolicy).Bound

        if not (sameBits back p) then
            problems.Add $"2^{k}: name {(RelativeRmsPolicy p).Name}"

        let report = AllClosePolicy(0.0, 0.0).Compare("x", ReadOnlySpan [| p |], ReadOnlySpan [| 0.0 |], [||])
        let m = Regex.Match(report.Summary(), @"max_abs=(\S+)")

        if not (m.Success && sameBits (Double.Parse(m.Groups.[1].Value, CultureInfo.InvariantCulture)) p) then
            problems.Add $"2^{k}: summary {report.Summary()}"

    Assert.That(problems, Is.Empty)

let ``Summary of a passing exact comparison reads as documented`` () =
    let ids = Array.init 12 float

    let report =
        ExactPolicy().Compare("experts", ReadOnlySpan ids, ReadOnlySpan(Array.copy ids), [| 6; 2 |])

    Assert.That(report.Summary(), Is.EqualTo "PASS experts exact max_abs=0 max_rel=0 mismatches=0/12")
    let withNaN = Array.copy ids
    withNaN.[5] <- nan
    let failed = ExactPolicy().Compare("experts", ReadOnlySpan withNaN, ReadOnlySpan ids, [| 6; 2 |])
    Assert.That(failed.Summary(), Is.EqualTo "FAIL experts exact max_abs=0 max_rel=0 mismatches=1/12 nan=1 inf=0")
    Assert.That(failed.FirstMismatches.[0].Index, Is.EqualTo "(2, 1)")

// ---------------------------------------------------------------------------------------------------------------
// Names and parsing

let ``every policy name parses back to the same policy`` () =
    let anyPolicy =
        Gen.oneof
            [
                policyGen
                Gen.map2
                    (fun (a: int) (b: int) -> AllClosePolicy(float a * 1.7e-9, float b / 3e7) :> TolerancePolicy)
                    (Gen.choose (0, 100000))
                    (Gen.choose (0, 100000))
                Gen.choose (0, 100000) |> Gen.map (fun b -> RelativeRmsPolicy(float b / 7e5) :> TolerancePolicy)
            ]

    Prop.forAll (Arb.fromGen anyPolicy) (fun policy ->
        let back = TolerancePolicy.Parse policy.Name
        expectEqual "name" back.Name policy.Name
        expectEqual "type" (back.GetType()) (policy.GetType())

        match policy, back with
        | (:? AllClosePolicy as p), (:? AllClosePolicy as q) -> expect "atol, rtol" (sameBits p.Atol q.Atol && sameBits p.Rtol q.Rtol)
        | (:? RelativeRmsPolicy as p), (:? RelativeRmsPolicy as q) -> expect "bound" (sameBits p.Bound q.Bound)
        | (:? BaselinePolicy as p), (:? BaselinePolicy as q) -> expect "format, factor" (p.Format = q.Format && sameBits p.Factor q.Factor)
        | _ -> ())

let ``Parse reads the documented forms`` () =
    Assert.That(TolerancePolicy.Parse "exact", Is.InstanceOf<ExactPolicy>())
    let preset = TolerancePolicy.Parse "allclose" :?> AllClosePolicy

    Assert.That(
        (preset.Atol, preset.Rtol),
        Is.EqualTo(((AllClosePolicy.For NumberFormat.Float32).Atol, (AllClosePolicy.For NumberFormat.Float32).Rtol))
    )

    Assert.That(preset.Name, Is.EqualTo "allclose(atol=1e-05, rtol=1.3e-06)")
    let bf = TolerancePolicy.Parse("allclose", NumberFormat.BFloat16) :?> AllClosePolicy
    Assert.That(bf.Rtol, Is.EqualTo 1.6e-2)
    let explicitTol = TolerancePolicy.Parse "allclose(atol=1e-6,rtol=1e-5)" :?> AllClosePolicy
    Assert.That((explicitTol.Atol, explicitTol.Rtol), Is.EqualTo((1e-6, 1e-5)))
    Assert.That((TolerancePolicy.Parse "relative-rms(0.01)" :?> RelativeRmsPolicy).Bound, Is.EqualTo 0.01)
    let b = TolerancePolicy.Parse "baseline(bf16)" :?> BaselinePolicy
    Assert.That((b.Format, b.Factor), Is.EqualTo((NumberFormat.BFloat16, 2.0)))
    let b3 = TolerancePolicy.Parse "baseline(f16,factor=3)" :?> BaselinePolicy
    Assert.That((b3.Format, b3.Factor, b3.Name), Is.EqualTo((NumberFormat.Float16, 3.0, "baseline(f16, factor=3)")))

    for bad in
        [
            ""
            "close"
            "allclose(atol=x)"
            "allclose(rtol=-1)"
            "relative-rms"
            "baseline(f8)"
            "exact(1)"
            "allclose(atol=1,atol=2)"
        ] do
        let e = throws<ArgumentException> (fun () -> TolerancePolicy.Parse bad |> ignore)
        Assert.That(e.ParamName, Is.EqualTo "name", bad)

let ``bad inputs are rejected with the array named`` () =
    let policy = AllClosePolicy.For NumberFormat.Float32

    let e =
        throws<ArgumentException> (fun () ->
            policy.Compare("weights", ReadOnlySpan [| 1.0; 2.0 |], ReadOnlySpan [| 1.0 |], [| 1 |]) |> ignore)

    Assert.That(e.Message, Does.Contain "weights")

    let e =
        throws<ArgumentException> (fun () ->
            policy.Compare("weights", ReadOnlySpan [| 1.0; 2.0 |], ReadOnlySpan [| 1.0; 2.0 |], [| 3 |])
            |> ignore)

    Assert.That(e.Message, Does.Contain "weights")
    let baseline = BaselinePolicy(NumberFormat.BFloat16)

    let e =
        throws<InvalidOperationException> (fun () ->
            baseline.Compare("out", ReadOnlySpan [| 1.0 |], ReadOnlySpan [| 1.0 |], [| 1 |]) |> ignore)

    Assert.That(e.Message, Does.Contain "baseline")

    let e =
        throws<ArgumentException> (fun () ->
            baseline.Compare("out", ReadOnlySpan [| 1.0 |], ReadOnlySpan [| 1.0 |], ReadOnlySpan [| 1.0; 2.0 |], [| 1 |])
            |> ignore)

    Assert.That(e.Message, Does.Contain "out")
    throws<ArgumentOutOfRangeException> (fun () -> AllClosePolicy(-1.0, 0.0) |> ignore) |> ignore
    throws<ArgumentOutOfRangeException> (fun () -> RelativeRmsPolicy(nan) |> ignore) |> ignore

    throws<ArgumentOutOfRangeException> (fun () -> BaselinePolicy(NumberFormat.Float16, infinity) |> ignore)
    |> ignore

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "harness/tolerance"
        "ToleranceTests"
        [
            Proofs.prop
                [ "tolerance.equal-arrays-pass" ]
                "every policy passes equal arrays with no mismatches"
                ``every policy passes equal arrays with no mismatches``
            Proofs.prop
                [ "tolerance.one-mismatch-reported" ]
                "one element beyond the bound fails with one mismatch at its index"
                ``one element beyond the bound fails with one mismatch at its index``
            Proofs.prop
                [ "tolerance.nan-inf-counted-apart" ]
                "NaN and Inf mismatches are counted apart and fail"
                ``NaN and Inf mismatches are counted apart and fail``
            Proofs.prop
                [ "tolerance.allclose-boundary" ]
                "allclose passes exactly at the bound and fails just beyond"
                ``allclose passes exactly at the bound and fails just beyond``
            Proofs.prop
                [ "tolerance.baseline-accepts-base" ]
                "baseline passes the baseline itself and the rounded reference"
                ``baseline passes the baseline itself and the rounded reference``
            Proofs.prop
                [ "tolerance.baseline-monotone-in-factor" ]
                "baseline bound is monotone in the factor"
                ``baseline bound is monotone in the factor``
            Proofs.prop
                [ "tolerance.baseline-floor" ]
                "baseline floor is twice the representation error of the reference"
                ``baseline floor is twice the representation error of the reference``
            Proofs.prop
                [ "tolerance.rms-scale-invariant" ]
                "relative-rms verdict is invariant under scaling by a power of two"
                ``relative-rms verdict is invariant under scaling by a power of two``
            Proofs.prop
                [ "tolerance.rms-verdict" ]
                "relative-rms verdict follows the norm ratio and a failure reports a mismatch"
                ``relative-rms verdict follows the norm ratio and a failure reports a mismatch``
            Proofs.prop
                [ "tolerance.first-mismatches" ]
                "FirstMismatches holds at most five in C order"
                ``FirstMismatches holds at most five in C order``
            Proofs.prop
                [ "tolerance.summary-full-precision" ]
                "Summary prints the verdict and every number at full precision"
                ``Summary prints the verdict and every number at full precision``
            Proofs.test
                [ "tolerance.summary-full-precision" ]
                "Summary and names round-trip every power of two"
                ``Summary and names round-trip every power of two``
            Proofs.test
                []
                "Summary of a passing exact comparison reads as documented"
                ``Summary of a passing exact comparison reads as documented``
            Proofs.prop
                [ "tolerance.names-parse-back" ]
                "every policy name parses back to the same policy"
                ``every policy name parses back to the same policy``
            Proofs.test [] "Parse reads the documented forms" ``Parse reads the documented forms``
            Proofs.test [] "bad inputs are rejected with the array named" ``bad inputs are rejected with the array named``
        ]
