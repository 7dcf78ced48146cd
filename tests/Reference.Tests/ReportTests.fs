/// The HTML reports (`--html FILE` on check, selfcheck and bench): the numbers they plot agree with the comparison
/// reports and the routing outputs, every page is offline (plotly.js embedded, no script or style from the network), and
/// headless Chromium draws the plots (screenshots decoded here: non-white, coloured pixels where the plots are, and none
/// on the same page without plotly.js).
/// Chromium is a Debian package (build.sh installs it): in CI (CI=true) a missing one fails; locally it is a visible skip.
module Reference.Tests.ReportTests

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.IO.Compression
open System.Text.RegularExpressions
open NUnit.Framework
open Reference.Harness.Comparison
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Reports

let private inCi () = String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

let private temp () =
    let d = Path.Combine(Path.GetTempPath(), "reference-reports-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private write path (arrays: (string * NdArray) list) = TensorFile.Write(path, arrays |> List.map (fun (k, v) -> KeyValuePair(k, v)))

// ---------------------------------------------------------------------------------------------------------------
// A PNG decoder for what Chromium writes: 8-bit RGB or RGBA, not interlaced (System.Drawing is not on Linux).

/// A decoded image: width, height and RGB bytes per pixel (alpha dropped).
type Image = { Width: int; Height: int; Rgb: byte[] }

let private bigEndian (b: byte[]) (o: int) = (int b.[o] <<< 24) ||| (int b.[o + 1] <<< 16) ||| (int b.[o + 2] <<< 8) ||| int b.[o + 3]

/// Decodes a PNG file (8-bit RGB or RGBA, no interlace); anything else fails the test.
let decodePng (path: string) =
    let bytes = File.ReadAllBytes path
    let signature = [| 137uy; 80uy; 78uy; 71uy; 13uy; 10uy; 26uy; 10uy |]
    Assert.That(bytes.[0..7], eq signature, $"{path} is not a PNG")
    let idat = new MemoryStream()
    let mutable width, height, channels = 0, 0, 0
    let mutable offset = 8
    let mutable finished = false

    while not finished && offset + 8 <= bytes.Length do
        let length = bigEndian bytes offset
        let kind = Text.Encoding.ASCII.GetString(bytes, offset + 4, 4)
        let data = offset + 8

        match kind with
        | "IHDR" ->
            width <- bigEndian bytes data
            height <- bigEndian bytes (data + 4)
            let depth, colour, interlace = bytes.[data + 8], bytes.[data + 9], bytes.[data + 12]
            Assert.That((depth, interlace), eq ((8uy, 0uy)), "8-bit, non-interlaced PNG expected")
            Assert.That(colour = 2uy || colour = 6uy, $"RGB or RGBA PNG expected, colour type {colour}")
            channels <- if colour = 2uy then 3 else 4
        | "IDAT" -> idat.Write(bytes, data, length)
        | "IEND" -> finished <- true
        | _ -> ()

        offset <- data + length + 4

    idat.Position <- 0L
    use inflate = new ZLibStream(idat, CompressionMode.Decompress)
    use raw = new MemoryStream()
    inflate.CopyTo raw
    let raw = raw.ToArray()
    let stride = width * channels
    Assert.That(raw.Length, eq (height * (stride + 1)), "decompressed size")
    let pixels = Array.zeroCreate<byte> (height * stride)

    let paeth (a: int) (b: int) (c: int) =
        let p = a + b - c
        let pa, pb, pc = abs (p - a), abs (p - b), abs (p - c)

        if pa <= pb && pa <= pc then a
        elif pb <= pc then b
        else c

    for y in 0 .. height - 1 do
        let filter = raw.[y * (stride + 1)]
        let source = y * (stride + 1) + 1
        let row = y * stride

        for x in 0 .. stride - 1 do
            let a = if x >= channels then int pixels.[row + x - channels] else 0
            let b = if y > 0 then int pixels.[row - stride + x] else 0

            let c =
                if y > 0 && x >= channels then
                    int pixels.[row - stride + x - channels]
                else
                    0

            let predictor =
                match filter with
                | 0uy -> 0
                | 1uy -> a
                | 2uy -> b
                | 3uy -> (a + b) / 2
                | 4uy -> paeth a b c
                | f -> failwithf "PNG filter type %d" f

            pixels.[row + x] <- byte ((int raw.[source + x] + predictor) &&& 0xFF)

    let rgb = Array.init (width * height * 3) (fun i -> pixels.[(i / 3) * channels + i % 3])

    { Width = width; Height = height; Rgb = rgb }

/// Pixels in rows y0 .. y1 - 1 (all columns) that satisfy the predicate on (r, g, b).
let countPixels (image: Image) (y0: int) (y1: int) (predicate: int -> int -> int -> bool) =
    let mutable n = 0

    for y in max 0 y0 .. min image.Height y1 - 1 do
        for x in 0 .. image.Width - 1 do
            let i = (y * image.Width + x) * 3

            if predicate (int image.Rgb.[i]) (int image.Rgb.[i + 1]) (int image.Rgb.[i + 2]) then
                n <- n + 1

    n

/// Coloured (not white, not grey): plot backgrounds, bars, heatmap cells. Text is grey (headless Chromium draws
/// greyscale antialiasing), so a page whose plots did not draw has almost none below the banner.
let coloured r g b = max r (max g b) - min r (min g b) >= 12

/// Strong red: mismatch cells of an error heatmap, the bound and capacity lines.
let red r g b = r >= 150 && g <= 90 && b <= 90

/// The banner's height in pixels (Page.fs's CSS: 56 px); pixel checks start below it.
let bannerHeight = 60

/// The longest run of red pixels in one row below the banner: a horizontal line (dashed, so its red pixels are counted).
let longestRedRow (image: Image) =
    seq {
        for y in bannerHeight .. image.Height - 1 ->
            let mutable n = 0

            for x in 0 .. image.Width - 1 do
                let i = (y * image.Width + x) * 3

                if red (int image.Rgb.[i]) (int image.Rgb.[i + 1]) (int image.Rgb.[i + 2]) then
                    n <- n + 1

            n
    }
    |> Seq.max

// ---------------------------------------------------------------------------------------------------------------
// Headless Chromium.

let private chromiumBinary =
    lazy
        ([ "/usr/bin/chromium"; "/usr/bin/chromium-browser"; "/usr/bin/google-chrome" ]
         |> List.tryFind File.Exists)

/// The Chromium binary, or a visible skip (locally) or failure (in CI).
let private requireChromium () =
    match chromiumBinary.Value with
    | Some b -> b
    | None ->
        let why = "headless Chromium is missing; install with: apt-get install -y chromium (build.sh does)"

        if inCi () then
            Assert.Fail why
            ""
        else
            Expecto.Tests.skiptest why
            ""

/// Takes a screenshot of an HTML file (window 1000 x height) and decodes it.
let screenshot (html: string) (height: int) =
    let chromium = requireChromium ()
    let png = Path.ChangeExtension(html, ".png")

    let profile =
        Path.Combine(Path.GetDirectoryName html, "chromium-profile-" + Guid.NewGuid().ToString "N")

    let psi =
        ProcessStartInfo(chromium, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)

    for a in
        [
            "--headless"
            "--disable-gpu"
            "--no-sandbox"
            "--hide-scrollbars"
            $"--user-data-dir={profile}"
            $"--screenshot={png}"
            $"--window-size=1000,{height}"
            Uri(html).AbsoluteUri
        ] do
        psi.ArgumentList.Add a

    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()

    if not (p.WaitForExit 90_000) then
        p.Kill true
        Assert.Fail $"chromium did not finish within 90 s on {html}"

    Assert.That(File.Exists png, $"chromium wrote no screenshot (exit {p.ExitCode})\n{out.Result}\n{err.Result}")
    decodePng png

// ---------------------------------------------------------------------------------------------------------------
// The reports, made through the CLI.

/// No script, style or frame from the network: plotly.js is inline (its banner comment is in the page), and no tag
/// has a src or href with http(s).
let assertOffline (html: string) =
    let page = File.ReadAllText html
    Assert.That(page, Does.Contain "plotly.js v", "plotly.js is embedded")
    Assert.That(page, Does.Contain "Plotly.newPlot", "the page draws plots")

    let remote =
        Regex.Matches(page, @"<(script|link|iframe|img)\b[^>]*\b(src|href)\s*=\s*[""']?\s*(https?:)?//", RegexOptions.IgnoreCase)

    Assert.That(remote.Count, eq 0, $"remote references: {String.Join(' ', remote |> Seq.map _.Value)}")

/// The same page without plotly.js: the blank control for the pixel checks (its plots cannot draw).
let withoutPlotly (html: string) =
    let page = File.ReadAllText html

    let start =
        page.IndexOf("<script type=\"text/javascript\" charset=\"utf-8\">", StringComparison.Ordinal)

    Assert.That(start, Is.GreaterThan 0, "the embedded plotly.js script")
    let stop = page.IndexOf("</script>", start, StringComparison.Ordinal) + "</script>".Length
    let control = Path.Combine(Path.GetDirectoryName html, "control-" + Path.GetFileName html)
    File.WriteAllText(control, page.Remove(start, stop - start))
    control

/// Logits [48, 6] float32 with distinct values (no near-ties), skewed so that some experts overflow a capacity.
let private logits =
    Array2D.init 48 6 (fun i j -> float32 (((i * 7 + j * 5) % 11) - 5) * 0.37f + float32 (j % 3) * 0.9f + float32 i * 0.001f)

let private cliOk (args: string list) =
    let code, out, err = CliTests.cli args
    Assert.That(code, eq 0, $"{String.Join(' ', args)}\n{out}\n{err}")

/// Writes the input, the reference's outputs and a copy with weights [5..12, 1] off by 0.01 (rank 2: a heatmap row band).
let private routingFiles d algorithm (parameters: string list) =
    let input, reference, tampered =
        Path.Combine(d, "in.npz"), Path.Combine(d, $"{algorithm}.npz"), Path.Combine(d, $"{algorithm}-bad.npz")

    write input [ "logits", NdArray.FromMatrix logits ]
    cliOk ([ "run"; algorithm; "--input"; input; "--output"; reference ] @ parameters)
    let outputs = TensorFile.Read reference
    let weights = outputs.["weights"].ToDoubles()
    let k = outputs.["weights"].Shape.[1]

    for i in 5..12 do
        weights.[i * k + 1] <- weights.[i * k + 1] + 0.01

    let bad =
        [
            for kv in outputs ->
                kv.Key,
                (if kv.Key = "weights" then
                     NdArray.Create(weights, Array.ofSeq kv.Value.Shape)
                 else
                     kv.Value)
        ]

    write tampered bad
    input, reference, tampered

let private capacityParams = [ "--param"; "k=2"; "--param"; "capacity_factor=1.0" ]

/// check --html: exit code as without it, an offline page with the verdict.
let private checkHtml d name algorithm input candidate parameters expectedCode verdict =
    let html = Path.Combine(d, name + ".html")

    let code, out, err =
        CliTests.cli ([ "check"; algorithm; "--input"; input; "--candidate"; candidate; "--html"; html ] @ parameters)

    Assert.That(code, eq expectedCode, $"{out}\n{err}")
    assertOffline html
    Assert.That(File.ReadAllText html, Does.Contain(verdict: string))
    html

// ---------------------------------------------------------------------------------------------------------------
// Tests.

/// Random arrays: values on several scales, perturbations around the float32 allclose bound, and NaN/Inf pairs.
let private randomPair (rng: Random) =
    let n = 1 + rng.Next 60
    let special = [| nan; infinity; -infinity; 0.0; Double.MaxValue |]

    let expected =
        Array.init n (fun _ ->
            if rng.Next 10 = 0 then
                special.[rng.Next special.Length]
            else
                (rng.NextDouble() - 0.5) * Math.Pow(10.0, float (rng.Next 9 - 4)))

    let got =
        expected
        |> Array.map (fun r ->
            match rng.Next 12 with
            | 0 -> special.[rng.Next special.Length]
            | 1 -> r
            | _ -> r + (rng.NextDouble() - 0.5) * 4e-5 * (1e-5 + 1.3e-6 * abs r) / 1e-5)

    got, expected

let ``the plotted ratios agree with the policy's margin and mismatch count`` () =
    let policy = AllClosePolicy.For Reference.Numerics.NumberFormat.Float32

    for seed in 1..300 do
        let got, expected = randomPair (Random seed)
        let report = policy.Compare("x", ReadOnlySpan got, ReadOnlySpan expected, [| got.Length |])
        let bound = Errors.boundOf report
        Assert.That(bound, eq (Errors.AllClose(policy.Atol, policy.Rtol)))
        let errors = Errors.compute bound [| got.Length |] got expected
        let beyond = errors.Ratio |> Array.filter (fun q -> q > 1.0) |> Array.length
        Assert.That(int64 beyond, eq report.MismatchCount, $"seed {seed}: ratios above 1 = the policy's mismatches")

        Assert.That(int64 errors.NonFinite, eq (report.NaNMismatches + report.InfMismatches), $"seed {seed}: NaN/Inf mismatches")

        // The report's margin is over the finite pairs; so is the largest finite ratio.
        let finite =
            Array.zip3 errors.Ratio got expected
            |> Array.filter (fun (_, c, r) -> Double.IsFinite c && Double.IsFinite r)
            |> Array.map (fun (q, _, _) -> q)

        match Option.ofNullable report.Margin with
        | Some m when finite.Length > 0 -> Assert.That(Array.max finite, Is.EqualTo(m).Within(1e-12 * max 1.0 m), $"seed {seed}: margin")
        | _ -> ()

        let centres, counts = Errors.histogram 0.25 errors.Ratio
        let plotted = errors.Ratio |> Array.filter (fun q -> q > 0.0 && Double.IsFinite q)
        Assert.That(Array.sum counts, eq plotted.Length, $"seed {seed}: every positive finite ratio is in a bin")
        Assert.That(centres.Length, eq counts.Length)

        // Each ratio falls in the bin whose centre is within half a bin width of its log10.
        for q in plotted do
            Assert.That(centres |> Array.exists (fun c -> abs (Math.Log10 q - c) <= 0.125 + 1e-9), $"seed {seed}: bin of {q}")

let ``the heatmap's block maximum keeps every element's largest error`` () =
    for seed in 1..40 do
        let rng = Random seed
        let rows, columns = 1 + rng.Next 400, 1 + rng.Next 400
        let values = Array.init (rows * columns) (fun _ -> rng.NextDouble())
        let cells, rowStep, columnStep = Errors.matrix 120 120 [| rows; columns |] values
        Assert.That(Array2D.length1 cells <= 120 && Array2D.length2 cells <= 120, $"seed {seed}: at most 120 x 120")

        for i in 0 .. rows - 1 do
            for j in 0 .. columns - 1 do
                Assert.That(cells.[i / rowStep, j / columnStep] >= values.[i * columns + j], $"seed {seed}: cell of ({i}, {j})")

        Assert.That(Seq.cast<float> cells |> Seq.max, eq (Array.max values))

let ``routing loads agree with the capacity output's load and stay within C`` () =
    let d = temp ()
    let input, reference, _ = routingFiles d "capacity" capacityParams
    let outputs = TensorFile.Read reference
    let algorithm = AlgorithmRegistry.Find "capacity"

    let call =
        algorithm.Bind(TensorFile.Read input, [ KeyValuePair("k", "2"); KeyValuePair("capacity_factor", "1.0") ], input)

    let view = Routing.view "capacity" call outputs outputs |> Option.get
    // The reference counts its own load output; the report counts the experts array: they must agree.
    Assert.That(view.Reference.PerExpert, eq (outputs.["load"].ToDoubles() |> Array.map int))
    let c = Option.get view.Capacity
    Assert.That(view.Reference.PerExpert |> Array.forall (fun l -> l <= c), $"loads within C = {c}")
    let minusOnes = outputs.["experts"].ToDoubles() |> Array.filter (fun v -> v = -1.0) |> Array.length
    Assert.That(view.Reference.Drops, eq minusOnes)
    Assert.That(minusOnes, Is.GreaterThan 0, "the test input overflows some expert")

let ``an unwritable --html path is bad input with one line`` () =
    let d = temp ()
    let input, reference, _ = routingFiles d "topk" []
    let html = Path.Combine(d, "no-such-dir", "r.html")

    let code, _, err =
        CliTests.cli [ "check"; "topk"; "--input"; input; "--candidate"; reference; "--html"; html ]

    Assert.That(code, eq 2)
    Assert.That(err.Trim().Split('\n').Length, eq 1, err)
    Assert.That(err, Does.Contain html)

let ``every kind of report is offline and Chromium draws its plots`` () =
    requireChromium () |> ignore
    let d = temp ()

    // check pass (topk: loads, no capacity line)
    let input, topk, _ = routingFiles d "topk" []
    let pass = checkHtml d "check-pass" "topk" input topk [] 0 "PASS topk"
    // check fail with a heatmap, and a routing check with loads and the capacity line
    let _, capacity, tampered = routingFiles d "capacity" capacityParams
    let fail = checkHtml d "check-fail" "capacity" input tampered capacityParams 1 "FAIL capacity"
    let routing = checkHtml d "check-capacity" "capacity" input capacity capacityParams 0 "PASS capacity"
    Assert.That(File.ReadAllText routing, Does.Contain "capacity C = ")
    // selfcheck and bench (the committed record: no benchmark runs here)
    let self = Path.Combine(d, "selfcheck.html")
    cliOk [ "selfcheck"; "--only"; "topk"; "--path"; "kernel"; "--cases"; "2"; "--html"; self ]
    assertOffline self
    let records = Directory.GetFiles(Repo.path [ "data"; "bench" ], "*.json") |> List.ofArray
    Assert.That(records, Is.Not.Empty)
    let bench = Path.Combine(d, "bench.html")
    cliOk ([ "bench"; "table" ] @ records @ [ "--html"; bench ])
    assertOffline bench

    // Chromium spends most of a screenshot waiting, not computing: take them all at once (the blank control too).
    let control = withoutPlotly routing

    let shots =
        [ pass, 2200; fail, 2800; routing, 2200; self, 900; bench, 1100; control, 2200 ]
        |> List.map (fun (html, height) -> Threading.Tasks.Task.Run(fun () -> html, screenshot html height))
        |> Array.ofList

    let shots = shots |> Array.map _.Result |> List.ofArray
    let blank = shots |> List.find (fun (h, _) -> h = control) |> snd
    let images = shots |> List.filter (fun (h, _) -> h <> control)

    // Every page: plots drew below the banner (coloured pixels: a 900 x 380 chart's plot area alone is ~150,000).
    for html, image in images do
        let n = countPixels image bannerHeight image.Height coloured
        Assert.That(n, Is.GreaterThan 40_000, $"{Path.GetFileName html}: {n} coloured pixels below the banner")

    // The control: the check page without plotly.js fails the same check.
    let n = countPixels blank bannerHeight blank.Height coloured
    Assert.That(n, Is.LessThan 5_000, $"the page without plotly.js has {n} coloured pixels")

    let image name = images |> List.find (fun (h, _) -> Path.GetFileName h = name) |> snd

    // The failing check's heatmap shows its mismatch band in red; the passing capacity check (same shapes) has none.
    let redFail = countPixels (image "check-fail.html") bannerHeight Int32.MaxValue red
    let redPass = countPixels (image "check-capacity.html") bannerHeight Int32.MaxValue red
    Assert.That(redFail, Is.GreaterThan(redPass + 8_000), $"red pixels: failing {redFail}, passing {redPass}")
    // The capacity line: a long dashed red row on the capacity report, none on topk's (no capacity).
    Assert.That(longestRedRow (image "check-capacity.html"), Is.GreaterThan 150, "capacity line")
    Assert.That(longestRedRow (image "check-pass.html"), Is.LessThan 50, "topk has no capacity line")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "reports"
        "ReportTests"
        [
            Proofs.test
                []
                "the plotted ratios agree with the policy's margin and mismatch count"
                ``the plotted ratios agree with the policy's margin and mismatch count``
            Proofs.test
                []
                "the heatmap's block maximum keeps every element's largest error"
                ``the heatmap's block maximum keeps every element's largest error``
            Proofs.test
                []
                "routing loads agree with the capacity output's load and stay within C"
                ``routing loads agree with the capacity output's load and stay within C``
            Proofs.test [] "an unwritable --html path is bad input with one line" ``an unwritable --html path is bad input with one line``
            Proofs.sequenced (
                Proofs.test
                    []
                    "every kind of report is offline and Chromium draws its plots"
                    ``every kind of report is offline and Chromium draws its plots``
            )
        ]
