// Profiling harness for the float32 FlashAttention kernel (issue 16): median time and GFLOP/s of the tiled path and
// the row-by-row path on random inputs, B1 H8, per (T, D, causal). Not part of the suite; the published numbers come
// from `reference bench attention`. Run after a Release build:
//   dotnet fsi tests/measure/flash-attention-speed.fsx [T,...] [D,...] [repeats]
#r "../Reference.Tests/bin/Release/net10.0/Reference.dll"
#r "../Reference.Tests/bin/Release/net10.0/System.Numerics.Tensors.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Kernels.dll"

open System
open System.Diagnostics
open System.Reflection
open Reference.Kernels.Attention

let args = fsi.CommandLineArgs |> Array.skip 1

let ints (i: int) (fallback: int list) =
    if args.Length > i then
        args.[i].Split ',' |> Array.map int |> List.ofArray
    else
        fallback

let ts, ds = ints 0 [ 512; 2048 ], ints 1 [ 64; 128 ]
let repeats = if args.Length > 2 then int args.[2] else 3

let onPath =
    typeof<FlashAttentionResult>.Assembly
        .GetType("Reference.Kernels.Attention.FlashAttention")
        .GetMethod("ComputeOnPath", BindingFlags.NonPublic ||| BindingFlags.Static)

let run (q, k, v, shape, o: FlashAttentionOptions, tiled: bool) =
    onPath.Invoke(null, [| box q; box k; box v; box shape; box o; box 1; box tiled |]) |> ignore

for t in ts do
    for d in ds do
        for causal in [ false; true ] do
            let r = Random 1
            let rnd n = Array.init n (fun _ -> float32 (r.NextDouble() * 2.0 - 1.0))
            let shape = AttentionShape(1, 8, 8, t, t, d, d)
            let q, k, v = rnd (8 * t * d), rnd (8 * t * d), rnd (8 * t * d)
            let o = FlashAttentionOptions(Causal = causal)
            let flops = 4.0 * 8.0 * float t * float t * float d * (if causal then 0.5 else 1.0)
            let times = [| ResizeArray<float>(); ResizeArray<float>() |]

            for rep in 0..repeats do
                for (i, tiled) in [ 0, true; 1, false ] do
                    let sw = Stopwatch.StartNew()
                    run (q, k, v, shape, o, tiled)

                    if rep > 0 then
                        times.[i].Add sw.Elapsed.TotalMilliseconds

            let med (x: ResizeArray<float>) = (Seq.sort x |> Array.ofSeq).[x.Count / 2]
            let a, b = med times.[0], med times.[1]

            printfn
                "T%d D%d causal=%b  tiled %.1f ms %.1f GFLOP/s   rows %.1f ms %.1f GFLOP/s   speed-up %.2fx  (load %s)"
                t
                d
                causal
                a
                (flops / a / 1e6)
                b
                (flops / b / 1e6)
                (b / a)
                (IO.File.ReadAllText("/proc/loadavg").Split(' ').[0])
