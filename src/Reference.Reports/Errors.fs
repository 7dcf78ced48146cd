/// The per-element errors of one output array against its bound, as the check report draws them: a histogram of
/// log10(|got - expected| / allowed) (or of log10 |got - expected| when the policy has no elementwise bound) and, for
/// arrays of rank 2 or more, a matrix of where the errors are (leading dimensions flattened into rows, block-maximum
/// downsampled when large).
module Reference.Reports.Errors

open System
open Reference.Harness.Comparison
open Reference.Harness.Tensors

/// The elementwise bound a report's policy applies: allowed(r) for a finite expected value r.
type Bound =
    /// allclose: atol + rtol |r|.
    | AllClose of atol: float * rtol: float
    /// baseline: one bound for every element (from the report's detail).
    | Constant of float
    /// exact (the bound is 0: any difference is a mismatch).
    | Exact
    /// No elementwise bound (relative-rms, validators that judge structure).
    | NoBound

let private detailNumber (key: string) (detail: string) =
    detail.Split(' ', StringSplitOptions.RemoveEmptyEntries)
    |> Array.tryPick (fun part ->
        if part.StartsWith(key + "=", StringComparison.Ordinal) then
            match
                Double.TryParse(
                    part.Substring(key.Length + 1),
                    Globalization.NumberStyles.Float,
                    Globalization.CultureInfo.InvariantCulture
                )
            with
            | true, v -> Some v
            | _ -> None
        else
            None)

/// The bound of a report, read back from its policy name (and, for baseline, the bound in its detail).
let boundOf (report: ComparisonReport) =
    let policy =
        try
            Some(TolerancePolicy.Parse report.PolicyName)
        with :? ArgumentException ->
            None

    match policy with
    | Some(:? AllClosePolicy as p) -> AllClose(p.Atol, p.Rtol)
    | Some(:? ExactPolicy) -> Exact
    | Some(:? BaselinePolicy) ->
        match report.Detail |> Option.ofObj |> Option.bind (detailNumber "bound") with
        | Some b -> Constant b
        | None -> NoBound
    | _ -> NoBound

/// One array's elementwise errors.
type ArrayErrors =
    {
        /// The array's shape.
        Shape: int[]
        /// Per element: |got - expected| / allowed where the bound is positive, |got - expected| when there is no
        /// bound; 0 where both sides are equal (or both NaN, or the same infinity); +infinity for a NaN or Inf mismatch,
        /// and for any difference under a zero bound.
        Ratio: float[]
        /// True when <c>Ratio</c> is relative to a bound (a ratio above 1 fails).
        Bounded: bool
        /// How many elements are exactly equal (the histogram's log axis cannot show them).
        Equal: int
        /// How many are NaN or Inf mismatches.
        NonFinite: int
    }

/// The elementwise errors of <paramref name="got"/> against <paramref name="expected"/> (same length, C order).
let compute (bound: Bound) (shape: int[]) (got: float[]) (expected: float[]) =
    if got.Length <> expected.Length then
        invalidArg "got" $"got has {got.Length} elements but expected has {expected.Length}"

    let ratio = Array.zeroCreate got.Length
    let mutable equal = 0
    let mutable nonFinite = 0

    for i in 0 .. got.Length - 1 do
        let c, r = got.[i], expected.[i]

        let q =
            if Double.IsNaN c && Double.IsNaN r then
                0.0
            elif c = r then
                0.0
            elif not (Double.IsFinite c && Double.IsFinite r) then
                nonFinite <- nonFinite + 1
                Double.PositiveInfinity
            else
                let e = abs (c - r)

                match bound with
                | AllClose(atol, rtol) ->
                    let a = atol + rtol * abs r
                    if a > 0.0 then e / a else Double.PositiveInfinity
                | Constant b -> if b > 0.0 then e / b else Double.PositiveInfinity
                | Exact -> Double.PositiveInfinity
                | NoBound -> e

        if q = 0.0 then
            equal <- equal + 1

        ratio.[i] <- q

    { Shape = shape; Ratio = ratio; Bounded = bound <> NoBound; Equal = equal; NonFinite = nonFinite }

/// The histogram's bins: counts of log10(ratio) over [lo, hi) in steps of <paramref name="width"/>, for the finite
/// positive ratios; the bins' centres.
let histogram (width: float) (ratio: float[]) =
    let logs = ratio |> Array.filter (fun q -> q > 0.0 && Double.IsFinite q) |> Array.map Math.Log10

    if logs.Length = 0 then
        [||], [||]
    else
        let lo = Math.Floor(Array.min logs / width) * width
        let hi = Math.Max(Math.Floor(Array.max logs / width) * width + width, lo + width)
        let n = int (Math.Round((hi - lo) / width))
        let counts = Array.zeroCreate n

        for l in logs do
            let b = min (n - 1) (int ((l - lo) / width))
            counts.[b] <- counts.[b] + 1

        Array.init n (fun b -> lo + (float b + 0.5) * width), counts

/// The array as a matrix of rows (the leading dimensions flattened) by the last dimension, downsampled to at most
/// <paramref name="maxRows"/> x <paramref name="maxColumns"/> by the maximum of each block (so one mismatch stays
/// visible); also the number of original rows and columns per cell.
let matrix (maxRows: int) (maxColumns: int) (shape: int[]) (values: float[]) =
    let columns = if shape.Length = 0 then 1 else shape.[shape.Length - 1]
    let rows = if columns = 0 then 0 else values.Length / columns
    let rowStep = max 1 ((rows + maxRows - 1) / maxRows)
    let columnStep = max 1 ((columns + maxColumns - 1) / maxColumns)
    let outRows = (rows + rowStep - 1) / rowStep
    let outColumns = (columns + columnStep - 1) / columnStep
    let cells = Array2D.zeroCreate outRows outColumns

    for i in 0 .. rows - 1 do
        for j in 0 .. columns - 1 do
            let v = values.[i * columns + j]
            let a, b = i / rowStep, j / columnStep

            if v > cells.[a, b] || Double.IsNaN v then
                cells.[a, b] <- v

    cells, rowStep, columnStep

/// The values of an array as doubles, in C order.
let doubles (array: NdArray) = array.ToDoubles()
