/// Properties of Precision (rounding to each format) and LowPrecision (emulated arithmetic); see proofs/precision.md.
/// The independent oracle for the 16-bit formats is a table of every non-negative value of the format, indexed by
/// bit pattern, searched by bisection: no bit tricks, no carries, nothing shared with the code under test.
module Reference.Tests.PrecisionTests

open System
open System.Globalization
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Numerics
open Reference.Tests.Proofs

// ---------------------------------------------------------------------------------------------------------------
// Helpers

let private show (x: float) = x.ToString("R", CultureInfo.InvariantCulture)

/// The same double bit for bit (so -0 and +0 differ), except that any NaN equals any NaN.
let private same (a: float) (b: float) =
    (Double.IsNaN a && Double.IsNaN b)
    || BitConverter.DoubleToInt64Bits a = BitConverter.DoubleToInt64Bits b

let private expectSame what (got: float) (expected: float) =
    if not (same got expected) then
        failwithf "%s: got %s, expected %s" what (show got) (show expected)

let private expect what cond =
    if not cond then
        failwith what

/// Assert.Throws with an F# function (exactly this exception type, not a subclass).
let private throws<'E when 'E :> exn> (f: unit -> unit) : 'E = Assert.Throws<'E>(Action f)

let private halfToDouble (h: Half) : float = Half.op_Explicit h
let private doubleToHalf (x: float) : Half = Half.op_Explicit x

let private lowFormats = [ NumberFormat.Float32; NumberFormat.Float16; NumberFormat.BFloat16 ]
let private allFormats = NumberFormat.Float64 :: lowFormats

// ---------------------------------------------------------------------------------------------------------------
// The oracle: the non-negative values of a 16-bit format, indexed by bit pattern (bit patterns of non-negative
// values are ordered like the values). The last entry is the pattern of +Infinity, which stands for 2^(emax+1):
// the value past the largest finite one that round-to-nearest overflows to.

let private bf16Grid =
    [|
        for b in 0..0x7F80 ->
            if b = 0x7F80 then
                Math.ScaleB(1.0, 128)
            else
                float (BitConverter.UInt32BitsToSingle(uint32 b <<< 16))
    |]

let private f16Grid =
    [|
        for b in 0..0x7C00 ->
            if b = 0x7C00 then
                65536.0
            else
                halfToDouble (BitConverter.UInt16BitsToHalf(uint16 b))
    |]

let private gridOf fmt =
    match fmt with
    | NumberFormat.Float16 -> f16Grid
    | NumberFormat.BFloat16 -> bf16Grid
    | _ -> invalidArg "fmt" "only the 16-bit formats have a grid"

/// The grid value nearest to x, ties to the even bit pattern; beyond the last finite value, the overflow rule.
let private nearest (grid: float[]) (x: float) =
    if Double.IsNaN x then
        nan
    else
        let top = grid.Length - 1
        let a = abs x

        let magnitude =
            if a >= grid.[top] then
                infinity
            else
                // Invariant: grid.[lo] <= a < grid.[hi].
                let mutable lo = 0
                let mutable hi = top

                while hi - lo > 1 do
                    let m = (lo + hi) / 2
                    if grid.[m] <= a then lo <- m else hi <- m
                // Compare a with the midpoint as 2a against lo + hi: both sides are exact in double
                // (a < 2^128 doubles exactly; two adjacent grid values share their spacing).
                let twice = 2.0 * a
                let mid = grid.[lo] + grid.[hi]

                let pick =
                    if twice < mid then lo
                    elif twice > mid then hi
                    elif lo % 2 = 0 then lo
                    else hi

                if pick = top then infinity else grid.[pick]

        if Double.IsNegative x then -magnitude else magnitude

/// The correctly rounded value of x in a low format, from an oracle that is independent of Precision.Round:
/// the grid for the 16-bit formats, the IEEE hardware conversion for float32.
let private oracle fmt (x: float) =
    match fmt with
    | NumberFormat.Float32 -> float (float32 x)
    | NumberFormat.Float16
    | NumberFormat.BFloat16 -> nearest (gridOf fmt) x
    | _ -> x

/// The next larger value of the format after a non-negative finite value v of the format; past the largest
/// finite value, 2^(emax+1) (the overflow pseudo-value).
let private nextUp fmt (v: float) =
    match fmt with
    | NumberFormat.Float64 -> Math.BitIncrement v
    | NumberFormat.Float32 ->
        let n = MathF.BitIncrement(float32 v)

        if Single.IsInfinity n then
            Math.ScaleB(1.0, 128)
        else
            float n
    | NumberFormat.Float16 -> f16Grid.[int (BitConverter.HalfToUInt16Bits(doubleToHalf v)) + 1]
    | NumberFormat.BFloat16 -> bf16Grid.[int (BitConverter.SingleToUInt32Bits(float32 v) >>> 16) + 1]
    | _ -> invalidArg "fmt" "unknown format"

/// The next smaller value of the format before a positive finite value v of the format.
let private nextDown fmt (v: float) =
    match fmt with
    | NumberFormat.Float64 -> Math.BitDecrement v
    | NumberFormat.Float32 -> float (MathF.BitDecrement(float32 v))
    | NumberFormat.Float16 -> f16Grid.[int (BitConverter.HalfToUInt16Bits(doubleToHalf v)) - 1]
    | NumberFormat.BFloat16 -> bf16Grid.[int (BitConverter.SingleToUInt32Bits(float32 v) >>> 16) - 1]
    | _ -> invalidArg "fmt" "unknown format"

/// Whether a value of the format has an even last significand bit (its bit pattern is even).
let private evenPattern fmt (v: float) =
    match fmt with
    | NumberFormat.Float64 -> BitConverter.DoubleToInt64Bits v % 2L = 0L
    | NumberFormat.Float32 -> BitConverter.SingleToUInt32Bits(float32 v) % 2u = 0u
    | NumberFormat.Float16 -> BitConverter.HalfToUInt16Bits(doubleToHalf v) % 2us = 0us
    | NumberFormat.BFloat16 -> (BitConverter.SingleToUInt32Bits(float32 v) >>> 16) % 2u = 0u
    | _ -> invalidArg "fmt" "unknown format"

// ---------------------------------------------------------------------------------------------------------------
// Generators

let private bits16 = Gen.choose (0, 0xFFFF)
let private bits32 = Gen.map2 (fun (h: int) (l: int) -> (uint32 h <<< 16) ||| uint32 l) bits16 bits16

let private bits64 =
    Gen.map2 (fun (h: uint32) (l: uint32) -> (uint64 h <<< 32) ||| uint64 l) bits32 bits32

/// A uniform double in [0, 1) with 52 random bits.
let private unit01 = bits64 |> Gen.map (fun b -> float (b >>> 12) * Math.ScaleB(1.0, -52))

/// (exponent bits, stored significand bits) of each format's layout.
let private layout fmt =
    match fmt with
    | NumberFormat.Float64 -> 11, 52
    | NumberFormat.Float32 -> 8, 23
    | NumberFormat.Float16 -> 5, 10
    | NumberFormat.BFloat16 -> 8, 7
    | _ -> invalidArg "fmt" "unknown format"

/// The value of a format with the given sign, biased exponent field and stored significand.
let private compose fmt (negative: bool) (exponentField: int) (significand: uint64) =
    let eb, mb = layout fmt
    let s = if negative then 1UL else 0UL

    let pattern =
        (s <<< (eb + mb)) ||| (uint64 exponentField <<< mb) ||| (significand &&& ((1UL <<< mb) - 1UL))

    match fmt with
    | NumberFormat.Float64 -> BitConverter.UInt64BitsToDouble pattern
    | NumberFormat.Float32 -> float (BitConverter.UInt32BitsToSingle(uint32 pattern))
    | NumberFormat.Float16 -> halfToDouble (BitConverter.UInt16BitsToHalf(uint16 pattern))
    | _ -> float (BitConverter.UInt32BitsToSingle(uint32 pattern <<< 16))

/// A finite value of the format whose exponent field lies in [lo, hi] (clamped to the finite range).
let private finiteWithExponent fmt lo hi =
    let eb, _ = layout fmt
    let maxField = (1 <<< eb) - 2

    gen {
        let! negative = Gen.elements [ false; true ]
        let clamp e = max 0 (min maxField e)
        let! e = Gen.choose (clamp lo, clamp hi)
        let! m = bits64
        return compose fmt negative e m
    }

/// Any finite value of the format, every exponent equally likely (so subnormals and the extremes are frequent).
let private finiteValue fmt =
    let eb, _ = layout fmt
    finiteWithExponent fmt 0 ((1 <<< eb) - 2)

/// A value of the format: mostly finite, sometimes an infinity or a zero of either sign.
let private representable fmt = Gen.frequency [ 20, finiteValue fmt; 1, Gen.elements [ infinity; -infinity; 0.0; -0.0 ] ]

/// A double near a rounding decision of the format: a midpoint between two adjacent values, one double ulp
/// either side of it, or a uniform point between the two. Random sign.
let private nearTie fmt =
    gen {
        let! v = finiteValue fmt
        let lo = abs v
        let hi = nextUp fmt lo
        let mid = lo + (hi - lo) / 2.0
        let! r = unit01
        let! kind = Gen.choose (0, 3)

        let x =
            match kind with
            | 0 -> mid
            | 1 -> Math.BitIncrement mid
            | 2 -> Math.BitDecrement mid
            | _ -> lo + r * (hi - lo)

        let! negative = Gen.elements [ false; true ]
        return if negative then -x else x
    }

/// Special values of every format: zeros, infinities, NaN, the extremes, overflow thresholds and their neighbours.
let private specials =
    [
        for fmt in allFormats do
            let top = Precision.MaxFinite fmt
            let threshold = top + (nextUp fmt top - top) / 2.0

            yield!
                [
                    top
                    threshold
                    Math.BitIncrement threshold
                    Math.BitDecrement threshold
                    Precision.SmallestNormal fmt
                    Math.BitDecrement(Precision.SmallestNormal fmt)
                ]
        yield! [ 0.0; -0.0; infinity; -infinity; nan; Double.Epsilon; Double.MaxValue; 1.0 ]
    ]
    |> List.collect (fun x -> [ x; -x ])

/// A double for testing rounding to fmt: raw bit patterns, values across the formats' ranges, near ties, specials.
let private doubleFor fmt =
    Gen.frequency
        [
            3, bits64 |> Gen.map BitConverter.UInt64BitsToDouble
            3,
            Gen.map3
                (fun r e neg -> (if neg then -1.0 else 1.0) * Math.ScaleB(1.0 + r, e))
                unit01
                (Gen.choose (-160, 140))
                (Gen.elements [ false; true ])
            4, nearTie fmt
            1, Gen.elements specials
        ]

let private withFormat formats (g: NumberFormat -> Gen<'T>) =
    Gen.elements formats |> Gen.bind (fun fmt -> g fmt |> Gen.map (fun x -> fmt, x))

// ---------------------------------------------------------------------------------------------------------------
// BFloat16.FromSingle

/// float32 inputs for bf16 rounding: random bit patterns, subnormals, exact ties, the overflow region, infinities.
let private singleForBf16 =
    Gen.frequency
        [
            4, bits32
            2, Gen.choose (0, 0x007FFFFF) |> Gen.map uint32
            2, bits16 |> Gen.map (fun h -> (uint32 h <<< 16) ||| 0x8000u)
            2, Gen.choose (0x7F7F0000, 0x7F800000) |> Gen.map uint32
            1, Gen.elements [ 0x7F800000u; 0x00000000u; 0x00008000u; 0x00018000u ]
        ]
    |> Gen.map2 (fun negative b -> if negative then b ||| 0x80000000u else b) (Gen.elements [ false; true ])
    |> Gen.map BitConverter.UInt32BitsToSingle
    |> Gen.filter (fun f -> not (Single.IsNaN f))

let ``bf16 from float32 is the nearest bf16 with ties to even`` () =
    Prop.forAll (Arb.fromGen singleForBf16) (fun f ->
        let got = BFloat16.FromSingle(f).ToDouble()
        expectSame $"FromSingle({show (float f)})" got (nearest bf16Grid (float f)))

let ``bf16 from float32 keeps every NaN a NaN`` () =
    // Every float32 NaN: both signs, every non-zero significand (2 * (2^23 - 1) patterns).
    let mutable failures = 0
    let mutable first = ""

    for sign in [ 0u; 0x80000000u ] do
        for significand in 1..0x007FFFFF do
            let bits = sign ||| 0x7F800000u ||| uint32 significand
            let b = BFloat16.FromSingle(BitConverter.UInt32BitsToSingle bits)
            let signKept = (uint32 b.RawBits &&& 0x8000u) = (sign >>> 16)

            if not (b.IsNaN && Single.IsNaN(b.ToSingle()) && signKept) then
                failures <- failures + 1

                if first = "" then
                    first <- $"0x{bits:X8} -> 0x{b.RawBits:X4}"

    Assert.That(failures, Is.EqualTo 0, $"NaN patterns not kept NaN with their sign; first: {first}")

// ---------------------------------------------------------------------------------------------------------------
// Precision.Round

let ``Round is idempotent`` () =
    Prop.forAll (Arb.fromGen (withFormat allFormats doubleFor)) (fun (fmt, x) ->
        let once = Precision.Round(x, fmt)
        expectSame $"{fmt} Round(Round({show x}))" (Precision.Round(once, fmt)) once)

let ``Round is monotone`` () =
    let pairs fmt =
        gen {
            let! x = doubleFor fmt
            let! kind = Gen.choose (0, 2)

            let! y =
                match kind with
                | 0 -> doubleFor fmt
                | 1 -> Gen.choose (1, 3) |> Gen.map (fun k -> Seq.fold (fun v _ -> Math.BitIncrement v) x [ 1..k ])
                | _ -> unit01 |> Gen.map (fun r -> x * (1.0 + r * Precision.Epsilon fmt))

            return min x y, max x y
        }

    let arb =
        withFormat allFormats pairs
        |> Gen.filter (fun (_, (x, y)) -> not (Double.IsNaN x || Double.IsNaN y))

    Prop.forAll (Arb.fromGen arb) (fun (fmt, (x, y)) ->
        let rx, ry = Precision.Round(x, fmt), Precision.Round(y, fmt)
        expect $"{fmt}: {show x} <= {show y} but Round gives {show rx} > {show ry}" (x > y || rx <= ry))

let ``Round error is at most u times the magnitude in the normal range`` () =
    let normal fmt =
        let lo, top = Precision.SmallestNormal fmt, Precision.MaxFinite fmt

        Gen.oneof
            [
                Gen.map3
                    (fun r e neg -> (if neg then -1.0 else 1.0) * min top (Math.ScaleB(1.0 + r, e)))
                    unit01
                    (Gen.choose (Math.ILogB lo, Math.ILogB top))
                    (Gen.elements [ false; true ])
                nearTie fmt |> Gen.filter (fun x -> abs x >= lo && abs x <= top)
            ]

    Prop.forAll (Arb.fromGen (withFormat allFormats normal)) (fun (fmt, x) ->
        let err = abs (Precision.Round(x, fmt) - x)
        expectSame "RepresentationError" (Precision.RepresentationError(x, fmt)) err
        expect $"{fmt}: |Round({show x}) - x| = {show err} > u|x|" (err <= Precision.UnitRoundoff fmt * abs x))

let ``Round leaves representable values unchanged`` () =
    Prop.forAll (Arb.fromGen (withFormat allFormats representable)) (fun (fmt, v) ->
        expectSame $"{fmt} Round({show v})" (Precision.Round(v, fmt)) v
        expectSame $"{fmt} RepresentationError({show v})" (Precision.RepresentationError(v, fmt)) 0.0)

let ``bf16 Round from double agrees with FromSingle on float32 values`` () =
    let singles = Gen.oneof [ singleForBf16; bits32 |> Gen.map BitConverter.UInt32BitsToSingle ]

    Prop.forAll (Arb.fromGen singles) (fun f ->
        expectSame
            $"Round({show (float f)}, BFloat16)"
            (Precision.Round(float f, NumberFormat.BFloat16))
            (BFloat16.FromSingle(f).ToDouble()))

let ``bf16 Round from double is the nearest bf16 with ties to even`` () =
    Prop.forAll (Arb.fromGen (doubleFor NumberFormat.BFloat16)) (fun x ->
        expectSame $"Round({show x}, BFloat16)" (Precision.Round(x, NumberFormat.BFloat16)) (nearest bf16Grid x))

let ``bf16 Round from double avoids double rounding through float32`` () =
    // x lies just above the midpoint of the bf16 neighbours 1 and 1 + 2^-7, by less than half a float32 ulp:
    // float32 rounds it onto the midpoint, and the tie then goes to the even neighbour 1.
    let x = 1.0 + Math.ScaleB(1.0, -8) + Math.ScaleB(1.0, -30)
    let correct = nearest bf16Grid x
    Assert.That(correct, Is.EqualTo(1.0 + Math.ScaleB(1.0, -7)), "the oracle rounds up: x is above the midpoint")
    Assert.That(Precision.Round(x, NumberFormat.BFloat16), Is.EqualTo correct)
    Assert.That(BFloat16.FromDouble(x).ToDouble(), Is.EqualTo 1.0, "FromDouble rounds twice, as documented")

// ---------------------------------------------------------------------------------------------------------------
// Float16 through System.Half

let ``Half round-trips exactly for all 65536 bit patterns`` () =
    let problems = ResizeArray()

    for b in 0..0xFFFF do
        let h = BitConverter.UInt16BitsToHalf(uint16 b)
        let d = halfToDouble h

        if Half.IsNaN h then
            if not (Double.IsNaN d && Double.IsNaN(Precision.Round(d, NumberFormat.Float16))) then
                problems.Add $"0x{b:X4}: NaN not kept"
        else
            let back = BitConverter.HalfToUInt16Bits(doubleToHalf d)

            if int back <> b then
                problems.Add $"0x{b:X4} -> {show d} -> 0x{back:X4}"

            if not (same (Precision.Round(d, NumberFormat.Float16)) d) then
                problems.Add $"Round moves 0x{b:X4}"

    Assert.That(problems, Is.Empty)

let ``Round to Float16 is the nearest Half with ties to even`` () =
    Prop.forAll (Arb.fromGen (doubleFor NumberFormat.Float16)) (fun x ->
        expectSame $"Round({show x}, Float16)" (Precision.Round(x, NumberFormat.Float16)) (nearest f16Grid x))

// ---------------------------------------------------------------------------------------------------------------
// Constants

let ``format constants match the formats' values`` () =
    for fmt in allFormats do
        let u = Precision.UnitRoundoff fmt
        let eps = Precision.Epsilon fmt
        let top = Precision.MaxFinite fmt
        let smallest = Precision.SmallestNormal fmt
        Assert.That(eps, Is.EqualTo(nextUp fmt 1.0 - 1.0), $"{fmt}: epsilon is the gap above 1")
        Assert.That(u, Is.EqualTo(eps / 2.0), $"{fmt}: u = eps / 2")
        Assert.That(Double.IsFinite top && Precision.Round(top, fmt) = top, $"{fmt}: MaxFinite is a finite value")

        Assert.That(
            Double.IsInfinity(nextUp fmt top)
            || fmt <> NumberFormat.Float64 && nextUp fmt top = 2.0 * Math.ScaleB(1.0, Math.ILogB top),
            $"{fmt}: nothing finite above MaxFinite"
        )

        Assert.That(Precision.Round(smallest, fmt), Is.EqualTo smallest, $"{fmt}: SmallestNormal is a value")
        // Below 2^emin the spacing stops shrinking: the gap below the smallest normal equals the gap above it.
        Assert.That(smallest - nextDown fmt smallest, Is.EqualTo(nextUp fmt smallest - smallest), $"{fmt}: subnormal spacing")
        Assert.That(nextUp fmt smallest - smallest, Is.EqualTo(eps * smallest), $"{fmt}: spacing at 2^emin")

    Assert.That(Precision.MaxFinite NumberFormat.Float16, Is.EqualTo 65504.0)
    Assert.That(Precision.MaxFinite NumberFormat.BFloat16, Is.EqualTo(float (BitConverter.UInt32BitsToSingle 0x7F7F0000u)))

// ---------------------------------------------------------------------------------------------------------------
// LowPrecision

/// Two finite values of fmt whose exponents differ by at most 25 (so that a + b and a - b are exact in double
/// for every format of at most 24 significant bits; a * b always is).
let private closePair fmt =
    gen {
        let eb, _ = layout fmt
        let! e = Gen.choose (0, (1 <<< eb) - 2)
        let! d = Gen.choose (-25, 25)
        let! a = finiteWithExponent fmt e e
        let! b = finiteWithExponent fmt (e + d) (e + d)
        return a, b
    }

/// Knuth's TwoSum: the rounding error of a + b in double (0 when the double sum is exact).
let private twoSumError (a: float) (b: float) =
    let s = a + b
    let bb = s - a
    (a - (s - bb)) + (b - bb)

let ``LowPrecision Add Sub Mul Max are Round of the exact result`` () =
    Prop.forAll (Arb.fromGen (withFormat lowFormats closePair)) (fun (fmt, (a, b)) ->
        let lp = LowPrecision.For fmt
        // Preconditions of the oracle: the double results below are the exact ones.
        expect $"a + b inexact in double for {show a}, {show b}" (twoSumError a b = 0.0 && twoSumError a (-b) = 0.0)
        expectSame $"{fmt} Add({show a}, {show b})" (lp.Add(a, b)) (oracle fmt (a + b))
        expectSame $"{fmt} Sub({show a}, {show b})" (lp.Sub(a, b)) (oracle fmt (a - b))
        expectSame $"{fmt} Mul({show a}, {show b})" (lp.Mul(a, b)) (oracle fmt (a * b))
        expectSame $"{fmt} Max({show a}, {show b})" (lp.Max(a, b)) (if a >= b then a else b))

/// Checks that q is the correctly rounded value of an exact real t > 0, given "t <= m" and "t >= m" as exact
/// comparisons against a candidate midpoint m (which has one bit more than the format).
let private checkNearest fmt what (q: float) (below: float -> bool) (above: float -> bool) =
    let emaxPlus1 = Math.ScaleB(1.0, Math.ILogB(Precision.MaxFinite fmt) + 1)
    let top = Precision.MaxFinite fmt

    if Double.IsPositiveInfinity q then
        // Overflow iff t >= the midpoint between MaxFinite and 2^(emax+1) (the tie goes to the even 2^(emax+1)).
        expect $"{what} = Inf but the exact value is below the overflow threshold" (above ((top + emaxPlus1) / 2.0))
    elif q = 0.0 then
        let tiny = nextUp fmt 0.0
        expect $"{what} = 0 but the exact value is above half the smallest subnormal" (below (tiny / 2.0))
    else
        let lo, hi = nextDown fmt q, nextUp fmt q
        let mLo, mHi = (lo + q) / 2.0, (q + hi) / 2.0
        let even = evenPattern fmt q
        expect $"{what} = {show q} but the exact value is below the lower midpoint" (above mLo && (even || not (below mLo)))
        expect $"{what} = {show q} but the exact value is above the upper midpoint" (below mHi && (even || not (above mHi)))

let ``LowPrecision Div and Sqrt are correctly rounded`` () =
    let positive fmt = Gen.two (finiteValue fmt |> Gen.map abs |> Gen.filter (fun v -> v > 0.0))

    Prop.forAll (Arb.fromGen (withFormat lowFormats positive)) (fun (fmt, (a, b)) ->
        let lp = LowPrecision.For fmt
        // a / b vs m  <=>  a vs m * b (b > 0); m * b has at most 25 + 24 bits and stays in range: exact.
        let q = lp.Div(a, b)
        checkNearest fmt $"{fmt} Div({show a}, {show b})" q (fun m -> a <= m * b) (fun m -> a >= m * b)
        // sqrt a vs m  <=>  a vs m * m; exact for the same reason.
        let r = lp.Sqrt a
        checkNearest fmt $"{fmt} Sqrt({show a})" r (fun m -> a <= m * m) (fun m -> a >= m * m))

let ``Float64 LowPrecision is plain double arithmetic`` () =
    let anyDouble = doubleFor NumberFormat.Float64

    let arb =
        Gen.zip3 anyDouble anyDouble (Gen.choose (0, 9) |> Gen.bind (fun n -> Gen.arrayOfLength (2 * n) anyDouble))

    Prop.forAll (Arb.fromGen arb) (fun (a, b, xs) ->
        let lp = LowPrecision(NumberFormat.Float64)
        expectSame "Add" (lp.Add(a, b)) (a + b)
        expectSame "Sub" (lp.Sub(a, b)) (a - b)
        expectSame "Mul" (lp.Mul(a, b)) (a * b)
        expectSame "Div" (lp.Div(a, b)) (a / b)
        expectSame "Exp" (lp.Exp a) (Math.Exp a)
        expectSame "Log" (lp.Log a) (Math.Log a)
        expectSame "Tanh" (lp.Tanh a) (Math.Tanh a)
        expectSame "Sqrt" (lp.Sqrt a) (Math.Sqrt a)
        expectSame "Max" (lp.Max(a, b)) (Math.Max(a, b))
        expectSame "Round" (lp.Round a) a
        let n = xs.Length / 2
        let x, y = xs.[.. n - 1], xs.[n..]
        let mutable dot = 0.0
        let mutable sum = 0.0

        for i in 0 .. n - 1 do
            dot <- dot + x.[i] * y.[i]
            sum <- sum + x.[i]

        expectSame "Dot" (lp.Dot(ReadOnlySpan x, ReadOnlySpan y)) dot
        expectSame "Sum" (lp.Sum(ReadOnlySpan x)) sum)

/// The dot product and the sum computed with native float32 / Half arithmetic, or for bf16 with the grid oracle
/// after each double operation (exact here: the inputs stay within 2^-6 .. 2^6, so no double result is rounded).
let private nativeDotAndSum fmt (x: float[]) (y: float[]) =
    match fmt with
    | NumberFormat.Float32 ->
        let mutable dot = 0.0f
        let mutable sum = 0.0f

        for i in 0 .. x.Length - 1 do
            dot <- dot + float32 x.[i] * float32 y.[i]
            sum <- sum + float32 x.[i]

        float dot, float sum
    | NumberFormat.Float16 ->
        let mutable dot = Half.Zero
        let mutable sum = Half.Zero

        for i in 0 .. x.Length - 1 do
            dot <- dot + doubleToHalf x.[i] * doubleToHalf y.[i]
            sum <- sum + doubleToHalf x.[i]

        halfToDouble dot, halfToDouble sum
    | _ ->
        let mutable dot = 0.0
        let mutable sum = 0.0

        for i in 0 .. x.Length - 1 do
            let p = x.[i] * y.[i]
            expect "exact product" (Math.FusedMultiplyAdd(x.[i], y.[i], -p) = 0.0)
            let p = nearest bf16Grid p
            expect "exact sums" (twoSumError dot p = 0.0 && twoSumError sum x.[i] = 0.0)
            dot <- nearest bf16Grid (dot + p)
            sum <- nearest bf16Grid (sum + x.[i])

        dot, sum

let ``LowPrecision Dot and Sum round after every operation`` () =
    let vectors fmt =
        let eb, _ = layout fmt
        let bias = (1 <<< (eb - 1)) - 1

        gen {
            let! n = Gen.elements [ 0; 1; 2; 7; 33; 97 ]
            let! xs = Gen.arrayOfLength (2 * n) (finiteWithExponent fmt (bias - 6) (bias + 6))
            return xs.[.. n - 1], xs.[n..]
        }

    Prop.forAll (Arb.fromGen (withFormat lowFormats vectors)) (fun (fmt, (x, y)) ->
        let lp = LowPrecision.For fmt
        let dot, sum = nativeDotAndSum fmt x y
        expectSame $"{fmt} Dot (n = {x.Length})" (lp.Dot(ReadOnlySpan x, ReadOnlySpan y)) dot
        expectSame $"{fmt} Sum (n = {x.Length})" (lp.Sum(ReadOnlySpan x)) sum)

let ``LowPrecision For returns one shared instance per format`` () =
    for fmt in allFormats do
        Assert.That(LowPrecision.For fmt, Is.SameAs(LowPrecision.For fmt))
        Assert.That((LowPrecision.For fmt).Format, Is.EqualTo fmt)

    throws<ArgumentOutOfRangeException> (fun () -> LowPrecision(enum<NumberFormat> 17) |> ignore)
    |> ignore

    throws<ArgumentException> (fun () ->
        LowPrecision.For(NumberFormat.Float32).Dot(ReadOnlySpan [| 1.0 |], ReadOnlySpan [| 1.0; 2.0 |])
        |> ignore)
    |> ignore

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "numerics/precision"
        "PrecisionTests"
        [
            Proofs.prop
                [ "precision.bf16-from-single-rne" ]
                "bf16 from float32 is the nearest bf16 with ties to even"
                ``bf16 from float32 is the nearest bf16 with ties to even``
            Proofs.test [ "precision.bf16-nan-kept" ] "bf16 from float32 keeps every NaN a NaN" ``bf16 from float32 keeps every NaN a NaN``
            Proofs.prop [ "precision.round-idempotent" ] "Round is idempotent" ``Round is idempotent``
            Proofs.prop [ "precision.round-monotone" ] "Round is monotone" ``Round is monotone``
            Proofs.prop
                [ "precision.round-error-bound" ]
                "Round error is at most u times the magnitude in the normal range"
                ``Round error is at most u times the magnitude in the normal range``
            Proofs.prop
                [ "precision.round-fixes-representable" ]
                "Round leaves representable values unchanged"
                ``Round leaves representable values unchanged``
            Proofs.prop
                [ "precision.bf16-round-agrees-with-single" ]
                "bf16 Round from double agrees with FromSingle on float32 values"
                ``bf16 Round from double agrees with FromSingle on float32 values``
            Proofs.prop
                [ "precision.bf16-round-nearest" ]
                "bf16 Round from double is the nearest bf16 with ties to even"
                ``bf16 Round from double is the nearest bf16 with ties to even``
            Proofs.test
                [ "precision.bf16-round-nearest" ]
                "bf16 Round from double avoids double rounding through float32"
                ``bf16 Round from double avoids double rounding through float32``
            Proofs.test
                [ "precision.half-round-trip" ]
                "Half round-trips exactly for all 65536 bit patterns"
                ``Half round-trips exactly for all 65536 bit patterns``
            Proofs.prop
                [ "precision.f16-round-nearest" ]
                "Round to Float16 is the nearest Half with ties to even"
                ``Round to Float16 is the nearest Half with ties to even``
            Proofs.test
                [ "precision.constants" ]
                "format constants match the formats' values"
                ``format constants match the formats' values``
            Proofs.prop
                [ "precision.lowprecision-exact-ops" ]
                "LowPrecision Add Sub Mul Max are Round of the exact result"
                ``LowPrecision Add Sub Mul Max are Round of the exact result``
            Proofs.prop
                [ "precision.lowprecision-div-sqrt" ]
                "LowPrecision Div and Sqrt are correctly rounded"
                ``LowPrecision Div and Sqrt are correctly rounded``
            Proofs.prop
                [ "precision.lowprecision-float64" ]
                "Float64 LowPrecision is plain double arithmetic"
                ``Float64 LowPrecision is plain double arithmetic``
            Proofs.prop
                [ "precision.lowprecision-dot-sum" ]
                "LowPrecision Dot and Sum round after every operation"
                ``LowPrecision Dot and Sum round after every operation``
            Proofs.test
                []
                "LowPrecision For returns one shared instance per format"
                ``LowPrecision For returns one shared instance per format``
        ]
