namespace Reference.Reports

open System
open System.Collections.Generic
open System.Globalization
open System.Text
open Plotly.NET
open Plotly.NET.LayoutObjects
open Reference.Harness
open Reference.Harness.Bench
open Reference.Harness.Comparison
open Reference.Harness.Registry
open Reference.Harness.Tensors

/// What <c>reference check --html FILE</c> knows about one check: the algorithm, the bound call, both sides' outputs
/// and the reports the algorithm's checker made.
/// <param name="algorithm">The algorithm checked.</param>
/// <param name="call">The bound inputs and parameters.</param>
/// <param name="expected">The outputs the candidate is judged against (the reference's, or the certified optimum).</param>
/// <param name="candidate">The candidate's outputs.</param>
/// <param name="candidateSource">Where the candidate came from (a file, or "PATH output").</param>
/// <param name="reports">One report per output, as <c>Algorithm.Check</c> returned them.</param>
[<Sealed>]
type CheckData
    (
        algorithm: Algorithm,
        call: AlgorithmCall,
        expected: IReadOnlyDictionary<string, NdArray>,
        candidate: IReadOnlyDictionary<string, NdArray>,
        candidateSource: string,
        reports: IReadOnlyList<ComparisonReport>
    ) =
    /// The algorithm checked.
    member _.Algorithm = algorithm
    /// The bound inputs and parameters.
    member _.Call = call
    /// The expected outputs.
    member _.Expected = expected
    /// The candidate's outputs.
    member _.Candidate = candidate
    /// Where the candidate came from.
    member _.CandidateSource = candidateSource
    /// One report per output.
    member _.Reports = reports

/// The HTML reports of <c>check</c>, <c>selfcheck</c> and <c>bench</c> (<c>--html FILE</c>): each one self-contained page
/// with a verdict banner and Plotly.NET charts, plotly.js embedded (no CDN).
[<AbstractClass; Sealed>]
type HtmlReport =
    static let width = 900
    static let height = 380
    static let invariant (x: float) = x.ToString("G4", CultureInfo.InvariantCulture)

    static let verticalLine (x: float) (label: string) =
        Shape.init (
            ShapeType = StyleParam.ShapeType.Line,
            X0 = x,
            X1 = x,
            Y0 = 0.0,
            Y1 = 1.0,
            Yref = "paper",
            Line = Line.init (Color = Color.fromHex "#cf222e", Width = 2.0, Dash = StyleParam.DrawingStyle.Dash),
            Label = ShapeLabel.init (Text = label, TextPosition = StyleParam.TextPosition.TopRight)
        )

    static let horizontalLine (y: float) (label: string) =
        Shape.init (
            ShapeType = StyleParam.ShapeType.Line,
            X0 = 0.0,
            X1 = 1.0,
            Xref = "paper",
            Y0 = y,
            Y1 = y,
            Line = Line.init (Color = Color.fromHex "#cf222e", Width = 2.0, Dash = StyleParam.DrawingStyle.Dash),
            Label = ShapeLabel.init (Text = label, TextPosition = StyleParam.TextPosition.TopRight)
        )

    static let sized (chart: GenericChart) =
        chart
        |> Chart.withSize (width, height)
        |> Chart.withMargin (Margin.init (Left = 70, Right = 30, Top = 40, Bottom = 50))
        |> Chart.withConfig (Config.init (Responsive = false, DisplayModeBar = false))

    static let withRange (zmin: float) (zmax: float) (chart: GenericChart) =
        chart
        |> GenericChart.mapTrace (fun t ->
            t.SetProperty("zmin", zmin :> obj)
            t.SetProperty("zmax", zmax :> obj)
            t)

    /// The histogram of one array's errors.
    static let errorHistogram (name: string) (errors: Errors.ArrayErrors) =
        let centres, counts = Errors.histogram 0.25 errors.Ratio

        if centres.Length = 0 then
            None
        else
            let xTitle =
                if errors.Bounded then
                    "log10(|got - expected| / allowed)"
                else
                    "log10 |got - expected| (no elementwise bound)"

            let chart =
                Chart.Column(values = counts, Keys = centres, Name = name, MarkerColor = Color.fromHex "#0969da")
                |> Chart.withTitle $"{name}: elements by error"
                |> Chart.withXAxisStyle (TitleText = xTitle)
                |> Chart.withYAxisStyle (TitleText = "elements")
                |> sized

            Some(
                if errors.Bounded then
                    chart |> Chart.withShape (verticalLine 0.0 "bound (ratio 1)")
                else
                    chart
            )

    /// The heatmap of where one array's errors are (rank 2 or more).
    static let errorHeatmap (name: string) (bound: Errors.Bound) (errors: Errors.ArrayErrors) =
        let cells, rowStep, columnStep = Errors.matrix 120 120 errors.Shape errors.Ratio
        let rows, columns = Array2D.length1 cells, Array2D.length2 cells

        let z, colorscale, zmax, what =
            if errors.Bounded then
                // Ratios in [0, 2]: green to yellow up to the bound, red beyond it (mismatches).
                let z = Array2D.map (fun v -> if Double.IsNaN v then 2.0 else min v 2.0) cells

                z,
                StyleParam.Colorscale.Custom
                    [
                        0.0, Color.fromHex "#e6f4ea"
                        0.5, Color.fromHex "#f2c744"
                        0.5001, Color.fromHex "#e53935"
                        1.0, Color.fromHex "#b71c1c"
                    ],
                2.0,
                (if bound = Errors.Exact then
                     "green where equal, red where they differ (exact)"
                 else
                     "|error| / allowed (capped at 2; red: beyond the bound)")
            else
                let finite = cells |> Seq.cast<float> |> Seq.filter Double.IsFinite |> Seq.fold max 0.0

                let top = if finite > 0.0 then finite else 1.0
                let z = Array2D.map (fun v -> if Double.IsFinite v then v else top) cells

                z,
                StyleParam.Colorscale.Custom [ 0.0, Color.fromHex "#e6f4ea"; 0.0001, Color.fromHex "#f2c744"; 1.0, Color.fromHex "#e53935" ],
                top,
                "|error| (any difference is coloured; red: the largest)"

        let zData = [ for i in 0 .. rows - 1 -> [ for j in 0 .. columns - 1 -> z.[i, j] ] ]

        let rowsText =
            if rowStep > 1 then
                $" (each cell: max over {rowStep} rows"
            else
                " ("

        let columnsText =
            if columnStep > 1 then
                (if rowStep > 1 then ", " else "") + $"{columnStep} columns)"
            elif rowStep > 1 then
                ")"
            else
                "one element per cell)"

        Chart.Heatmap(zData = zData, ColorScale = colorscale, ReverseYAxis = true, Name = name)
        |> withRange 0.0 zmax
        |> Chart.withTitle $"{name}: where the errors are{rowsText}{columnsText}"
        |> Chart.withXAxisStyle (TitleText = "last dimension")
        |> Chart.withYAxisStyle (TitleText = "leading dimensions, flattened")
        |> sized,
        what

    static let routingBlocks (view: Routing.RoutingView) =
        let experts = [ for e in 0 .. view.Experts - 1 -> $"e{e}" ]

        let bars =
            [
                yield
                    Chart.Column(
                        values = view.Reference.PerExpert,
                        Keys = experts,
                        Name = "reference",
                        MarkerColor = Color.fromHex "#8c959f"
                    )
                match view.Candidate with
                | Some c ->
                    yield Chart.Column(values = c.PerExpert, Keys = experts, Name = "candidate", MarkerColor = Color.fromHex "#0969da")
                | None -> ()
            ]

        let chart =
            Chart.combine bars
            |> Chart.withTitle "Expert loads"
            |> Chart.withXAxisStyle (TitleText = "expert")
            |> Chart.withYAxisStyle (TitleText = "requests")
            |> sized

        let chart =
            match view.Capacity with
            | Some c -> chart |> Chart.withShape (horizontalLine (float c) $"capacity C = {c}")
            | None -> chart

        let drops =
            $"drops ({view.DropsMean}): reference {view.Reference.Drops}"
            + (match view.Candidate with
               | Some c -> $", candidate {c.Drops}"
               | None -> ", candidate: its routing array is missing or misshapen")
            + (match view.Capacity with
               | Some c -> $"; capacity C = {c}"
               | None -> "; no capacity")

        [ Page.Heading("Routing", drops); Page.Plot chart ]

    static let arrayBlocks (data: CheckData) (report: ComparisonReport) =
        [
            yield
                Page.Heading(
                    report.Summary(),
                    (match report.Detail with
                     | null -> ""
                     | d -> d)
                )
            let lines = report.MismatchLines() |> List.ofSeq

            if not lines.IsEmpty then
                yield Page.Raw $"<pre>{Page.escape (String.Join('\n', lines))}</pre>\n"

            match data.Expected.TryGetValue report.ArrayName, data.Candidate.TryGetValue report.ArrayName with
            | (true, expected), (true, got) when isNull report.Problem && expected.Length = got.Length ->
                let shape = Array.ofSeq got.Shape

                let bound = Errors.boundOf report
                let errors = Errors.compute bound shape (Errors.doubles got) (Errors.doubles expected)

                yield
                    Page.Text(
                        $"{errors.Equal} of {got.Length} elements equal the expected value exactly"
                        + $"; NaN/Inf mismatches: {errors.NonFinite} (outside the histogram)"
                    )

                if not report.IsIntegral then
                    match errorHistogram report.ArrayName errors with
                    | Some h -> yield Page.Plot h
                    | None -> ()

                if shape.Length >= 2 && got.Length > 0 then
                    let heatmap, what = errorHeatmap report.ArrayName bound errors
                    yield Page.Text $"colour: {what}"
                    yield Page.Plot heatmap
            | _ -> ()
        ]

    /// The check report's page (see <see cref="Check"/>).
    /// <param name="data">The check.</param>
    /// <returns>The HTML.</returns>
    static member CheckPage(data: CheckData) =
        ArgumentNullException.ThrowIfNull data
        let failed = data.Reports |> Seq.filter (fun r -> not r.Passed) |> Seq.map _.ArrayName |> List.ofSeq
        let name = data.Algorithm.Name

        let verdict =
            if failed.IsEmpty then
                $"PASS {name}: {data.Reports.Count} outputs match the reference"
            else
                let names = String.Join(", ", failed)
                $"FAIL {name}: {failed.Length} of {data.Reports.Count} outputs mismatch ({names})"

        let parameters =
            data.Call.Parameters.AsText |> Seq.map (fun kv -> $"{kv.Key}={kv.Value}") |> String.concat " "

        let blocks =
            [
                yield Page.Text $"input {data.Call.Source}; candidate {data.CandidateSource}; parameters: {parameters}"
                match Routing.view name data.Call data.Expected data.Candidate with
                | Some view -> yield! routingBlocks view
                | None -> ()
                for r in data.Reports do
                    yield! arrayBlocks data r
            ]

        Page.render $"reference check {name}" (if failed.IsEmpty then "pass" else "fail") verdict blocks

    /// Writes the check report: a verdict banner; for routing algorithms the expert loads of the reference and the
    /// candidate, the drops and the capacity line; per output its summary, first mismatches, a histogram of
    /// |got - expected| / allowed with the bound at 1 (of |got - expected| where the policy has no elementwise bound),
    /// and for outputs of rank 2 or more a heatmap of where the errors are.
    /// <param name="path">The HTML file to write.</param>
    /// <param name="data">The check.</param>
    /// <exception cref="System.IO.IOException">The file cannot be written; the message names it.</exception>
    static member Check(path: string, data: CheckData) = Page.write path (HtmlReport.CheckPage data)

    /// The selfcheck report's page (see <see cref="SelfCheck"/>).
    /// <param name="rows">The selfcheck rows.</param>
    /// <param name="seed">The first seed of the random cases.</param>
    /// <param name="cases">Random cases per algorithm.</param>
    /// <returns>The HTML.</returns>
    static member SelfCheckPage(rows: IReadOnlyList<SelfCheckRow>, seed: int, cases: int) =
        ArgumentNullException.ThrowIfNull rows
        let algorithms = rows |> Seq.map _.Algorithm |> Seq.distinct |> Array.ofSeq
        let paths = rows |> Seq.map _.Path |> Seq.distinct |> Array.ofSeq

        let find a p = rows |> Seq.tryFind (fun r -> r.Algorithm = a && r.Path = p)

        // 0 = PASS, 1 = FAIL, NaN = no such row (the algorithm has no such path, or it did not run).
        let z =
            [
                for a in algorithms ->
                    [
                        for p in paths ->
                            match find a p with
                            | Some r when r.Verdict = "PASS" -> 0.0
                            | Some _ -> 1.0
                            | None -> nan
                    ]
            ]

        let text =
            [
                for a in algorithms ->
                    [
                        for p in paths ->
                            match find a p with
                            | Some r when r.Failures = 0 -> $"{r.Verdict} {r.Cases}"
                            | Some r -> $"{r.Verdict} {r.Failures}/{r.Cases}"
                            | None -> ""
                    ]
            ]

        let failing = rows |> Seq.filter (fun r -> r.Verdict <> "PASS") |> Seq.length

        let chart =
            Chart.AnnotatedHeatmap(
                zData = z,
                annotationText = text,
                X = paths,
                Y = algorithms,
                ColorScale = StyleParam.Colorscale.Custom [ 0.0, Color.fromHex "#2da44e"; 1.0, Color.fromHex "#cf222e" ],
                ShowScale = false,
                ReverseYAxis = true,
                XGap = 2,
                YGap = 2
            )
            |> withRange 0.0 1.0
            |> Chart.withTitle "algorithms x paths (cell: verdict and cases; blank: no such path)"
            |> Chart.withSize (width, max height (120 + 26 * algorithms.Length))
            |> Chart.withMargin (Margin.init (Left = 140, Right = 30, Top = 60, Bottom = 40))
            |> Chart.withConfig (Config.init (Responsive = false, DisplayModeBar = false))

        let table = StringBuilder()

        table.Append(
            "<table><tr><th>algorithm</th><th>path</th><th>cases</th><th>verdict</th><th>worst error</th><th>worst margin</th><th>first failure</th></tr>\n"
        )
        |> ignore

        for r in rows do
            let margin =
                match Option.ofNullable r.WorstMargin with
                | Some m -> invariant m
                | None -> "-"

            let cls = if r.Verdict = "PASS" then "pass" else "fail"

            let failure =
                match r.FirstFailure with
                | null -> ""
                | f -> f

            table.Append(
                $"<tr><td>{Page.escape r.Algorithm}</td><td>{Page.escape r.Path}</td><td>{r.Cases}</td><td class='{cls}'>{r.Verdict} ({r.Failures})</td>"
                + $"<td>{invariant r.WorstError}</td><td>{margin}</td><td>{Page.escape failure}</td></tr>\n"
            )
            |> ignore

        table.Append "</table>\n" |> ignore

        let verdict =
            if failing = 0 then
                $"PASS selfcheck: all {rows.Count} rows pass"
            else
                $"FAIL selfcheck: {failing} of {rows.Count} rows fail"

        Page.render
            "reference selfcheck"
            (if failing = 0 then "pass" else "fail")
            verdict
            [
                Page.Text $"seed {seed}, {cases} random cases per algorithm, plus the golden cases"
                Page.Plot chart
                Page.Heading("Rows", "worst margin: the largest error / bound (below 1 passes)")
                Page.Raw(table.ToString())
            ]

    /// Writes the selfcheck report: a verdict banner, the matrix of algorithms x paths (green pass, red fail, with the
    /// number of cases) and the table of rows.
    /// <param name="path">The HTML file to write.</param>
    /// <param name="rows">The selfcheck rows.</param>
    /// <param name="seed">The first seed of the random cases.</param>
    /// <param name="cases">Random cases per algorithm.</param>
    /// <exception cref="System.IO.IOException">The file cannot be written; the message names it.</exception>
    static member SelfCheck(path: string, rows: IReadOnlyList<SelfCheckRow>, seed: int, cases: int) =
        Page.write path (HtmlReport.SelfCheckPage(rows, seed, cases))

    /// The bench report's page (see <see cref="Bench"/>).
    /// <param name="records">The benchmark records.</param>
    /// <returns>The HTML.</returns>
    static member BenchPage(records: IReadOnlyList<BenchRecord>) =
        ArgumentNullException.ThrowIfNull records

        let blocks =
            [
                for record in records do
                    let m = record.Machine

                    let load =
                        match Option.ofNullable m.LoadAverage with
                        | Some l -> $", load average {invariant l}"
                        | None -> ""

                    yield
                        Page.Heading(
                            $"{record.Bench}, {m.Date}",
                            $"{m.Cpu}, {m.Cores} cores, {m.Os}, {m.Runtime}{load}. Times are medians; ratios are to the first solver of the same size in the same run (only ratios within a run compare)."
                        )

                    let sizes = record.Cases |> Seq.map _.Size |> Seq.distinct |> Array.ofSeq
                    let solvers = record.Cases |> Seq.map _.Solver |> Seq.distinct |> Array.ofSeq

                    let first size = record.Cases |> Seq.find (fun c -> c.Size = size) |> _.MedianMs |> Option.ofNullable

                    let series (value: BenchCase -> float option) =
                        [
                            for solver in solvers ->
                                let points =
                                    [
                                        for size in sizes do
                                            match record.Cases |> Seq.tryFind (fun c -> c.Size = size && c.Solver = solver) with
                                            | Some c ->
                                                match value c with
                                                | Some v -> yield size, v
                                                | None -> ()
                                            | None -> ()
                                    ]

                                Chart.Column(values = List.map snd points, Keys = List.map fst points, Name = solver)
                        ]

                    let ratio (c: BenchCase) =
                        match Option.ofNullable c.MedianMs, first c.Size with
                        | Some ms, Some f when f > 0.0 -> Some(ms / f)
                        | _ -> None

                    let ratios =
                        Chart.combine (series ratio)
                        |> Chart.withTitle $"{record.Bench}: time / the first solver's time"
                        |> Chart.withXAxisStyle (TitleText = "size")
                        |> Chart.withYAxisStyle (TitleText = "ratio (log)", AxisType = StyleParam.AxisType.Log)
                        |> sized

                    let times =
                        Chart.combine (series (fun c -> Option.ofNullable c.MedianMs))
                        |> Chart.withTitle $"{record.Bench}: median time"
                        |> Chart.withXAxisStyle (TitleText = "size")
                        |> Chart.withYAxisStyle (TitleText = "ms (log)", AxisType = StyleParam.AxisType.Log)
                        |> sized

                    yield Page.Plot ratios
                    yield Page.Plot times

                    let notRun =
                        record.Cases
                        |> Seq.filter (fun c -> not c.MedianMs.HasValue)
                        |> Seq.map (fun c ->
                            let note =
                                match c.Note with
                                | null -> "no note"
                                | n -> n

                            $"{c.Size} {c.Solver}: {note}")
                        |> List.ofSeq

                    if not notRun.IsEmpty then
                        yield Page.Text("not run: " + String.Join("; ", notRun))
            ]

        let names = records |> Seq.map _.Bench |> Seq.distinct |> String.concat ", "
        Page.render "reference bench" "info" $"bench {names}: {records.Count} record(s)" blocks

    /// Writes the bench report: per record, the ratio of every solver's median time to the first solver's of the same
    /// size (log scale), and the median times.
    /// <param name="path">The HTML file to write.</param>
    /// <param name="records">The benchmark records.</param>
    /// <exception cref="System.IO.IOException">The file cannot be written; the message names it.</exception>
    static member Bench(path: string, records: IReadOnlyList<BenchRecord>) = Page.write path (HtmlReport.BenchPage records)
