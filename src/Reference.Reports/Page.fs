/// One self-contained HTML page: a verdict banner, sections of plain HTML and Plotly.NET charts, and plotly.js embedded
/// once in the head (the script Plotly.NET embeds for PlotlyJSReference.Full), so the page opens offline and loads
/// nothing from a CDN.
module Reference.Reports.Page

open System
open System.IO
open System.Net
open System.Text
open Plotly.NET

/// One block of the page, in order.
type Block =
    /// A heading (level 2) and an optional line of text under it.
    | Heading of title: string * note: string
    /// A paragraph of text (escaped).
    | Text of string
    /// A chart, drawn by plotly.js.
    | Plot of GenericChart
    /// HTML made by this library (already escaped).
    | Raw of string

/// Escapes text for HTML.
let escape (text: string) = WebUtility.HtmlEncode text

/// plotly.js as Plotly.NET ships it: the script that Plotly.NET inlines for <c>PlotlyJSReference.Full</c>, read from its
/// assembly's resources.
let plotlyJs =
    lazy
        (let assembly = typeof<GenericChart>.Assembly
         let name = $"Plotly.NET.plotly-{Globals.PLOTLYJS_VERSION}.min.js"

         use stream =
             match assembly.GetManifestResourceStream name with
             | null -> failwith $"Plotly.NET does not hold {name}: cannot embed plotly.js"
             | s -> s

         use reader = new StreamReader(stream, Encoding.UTF8)
         reader.ReadToEnd())

let private css =
    """
body { font-family: sans-serif; margin: 0; padding: 0 16px 24px 16px; color: #222; background: #fff; }
.banner { height: 56px; line-height: 56px; margin: 0 -16px 8px -16px; padding: 0 16px; font-size: 22px; font-weight: bold;
          color: #fff; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.banner.pass { background: #1a7f37; }
.banner.fail { background: #cf222e; }
.banner.info { background: #0969da; }
h2 { font-size: 17px; margin: 14px 0 2px 0; }
p { margin: 2px 0 6px 0; font-size: 13px; }
pre { font-size: 12px; margin: 2px 0 6px 0; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
td.fail { color: #cf222e; font-weight: bold; }
td.pass { color: #1a7f37; }
.plot { margin: 0; }
"""

/// The page: <paramref name="title"/> in the tab, a banner (<c>pass</c>, <c>fail</c> or <c>info</c> colours) holding
/// <paramref name="verdict"/>, then the blocks. Every chart's HTML is Plotly.NET's (<c>GenericChart.toChartHTML</c>).
let render (title: string) (kind: string) (verdict: string) (blocks: Block list) =
    let html = StringBuilder()

    let add (s: string) = html.Append s |> ignore

    add "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    add $"<title>{escape title}</title><style>{css}</style>\n"
    add "<script type=\"text/javascript\" charset=\"utf-8\">\n"
    add plotlyJs.Value
    add "\n</script></head>\n<body>\n"
    add $"<div class=\"banner {kind}\" id=\"verdict\">{escape verdict}</div>\n"

    for block in blocks do
        match block with
        | Heading(t, note) ->
            add $"<h2>{escape t}</h2>\n"

            if not (String.IsNullOrEmpty note) then
                add $"<p>{escape note}</p>\n"
        | Text t -> add $"<p>{escape t}</p>\n"
        | Raw h -> add h
        | Plot chart -> add $"<div class=\"plot\">{GenericChart.toChartHTML chart}</div>\n"

    add "</body></html>\n"
    html.ToString()

/// Writes the page to <paramref name="path"/>.
/// <exception cref="IOException">The file cannot be written; the message names it.</exception>
let write (path: string) (page: string) =
    try
        File.WriteAllText(path, page, UTF8Encoding false)
    with
    | :? IOException
    | :? UnauthorizedAccessException as ex ->
        let reason = ex.Message.ReplaceLineEndings(" ").Trim()
        raise (IOException($"cannot write the HTML report {path}: {reason}", ex))
