/// Tensor file I/O (.npy, .npz, .safetensors): round trips on bit patterns, rejection of malformed files with a
/// TensorFileException that names the problem, bounded allocation, and agreement with numpy itself.
/// Theorems: proofs/tensorio.md.
module Reference.Tests.TensorFileTests

open System
open System.Diagnostics
open System.IO
open System.IO.Compression
open System.Text
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Numerics
open Reference.Harness.Tensors
open Reference.Tests.Proofs

// ---------------------------------------------------------------------------------------------------------
// Bit patterns, computed here independently of the library's byte conversions.

/// Every element's bit pattern, widened to uint64 (so NaN payloads, -0.0 and subnormals compare exactly).
let bits (a: NdArray) : uint64[] =
    match a.RawValues with
    | :? (Half[]) as h -> h |> Array.map (fun x -> uint64 (BitConverter.HalfToUInt16Bits x))
    | :? (BFloat16[]) as b -> b |> Array.map (fun x -> uint64 x.RawBits)
    | :? (float32[]) as f -> f |> Array.map (fun x -> uint64 (BitConverter.SingleToUInt32Bits x))
    | :? (float[]) as d -> d |> Array.map BitConverter.DoubleToUInt64Bits
    | :? (int[]) as i -> i |> Array.map (fun x -> uint64 (uint32 x))
    | :? (int64[]) as l -> l |> Array.map uint64
    | :? (byte[]) as u -> u |> Array.map uint64
    | :? (bool[]) as z -> z |> Array.map (fun x -> if x then 1UL else 0UL)
    | _ -> failwith "unknown storage"

/// The elements as little-endian bytes, built from the bit patterns above.
let littleEndian (a: NdArray) : byte[] =
    let size = NdArray.ElementSize a.DType

    [|
        for b in bits a do
            for k in 0 .. size - 1 -> byte ((b >>> (8 * k)) &&& 0xFFUL)
    |]

let assertSame (what: string) (expected: NdArray) (actual: NdArray) =
    Assert.That(actual.DType, eq expected.DType, what + ": dtype")
    Assert.That(List.ofSeq actual.Shape, eq (List.ofSeq expected.Shape), what + ": shape")
    Assert.That(bits actual, eq (bits expected), what + ": bit patterns")

let assertSameSet (what: string) (expected: (string * NdArray) list) (actual: Collections.Generic.IReadOnlyDictionary<string, NdArray>) =
    Assert.That(List.ofSeq actual.Keys, eq (List.map fst expected), what + ": names in order")

    for name, a in expected do
        assertSame $"{what}: array '{name}'" a actual.[name]

// ---------------------------------------------------------------------------------------------------------
// Generators: every dtype, ranks 0..4 with zero-length and awkward dimensions, values that are random bit
// patterns mixed with the special ones (NaN payloads, signalling NaNs, +-Inf, -0.0, subnormals, extremes).

let npyDTypes = [ DType.F16; DType.F32; DType.F64; DType.I32; DType.I64; DType.U8; DType.Bool ]
let allDTypes = DType.BF16 :: npyDTypes

let special16 =
    [|
        0x0000us
        0x8000us
        0x7C00us
        0xFC00us
        0x7E01us
        0x7C01us
        0xFE00us
        0x0001us
        0x83FFus
        0x7BFFus
    |]

let specialBf16 =
    [|
        0x0000us
        0x8000us
        0x7F80us
        0xFF80us
        0x7FC1us
        0x7F81us
        0xFFC0us
        0x0001us
        0x807Fus
        0x7F7Fus
    |]

let special32 =
    [|
        0x00000000u
        0x80000000u
        0x7F800000u
        0xFF800000u
        0x7FC00001u
        0x7F800001u
        0xFFC00000u
        0x00000001u
        0x807FFFFFu
        0x7F7FFFFFu
    |]

let special64 =
    [|
        0x0000000000000000UL
        0x8000000000000000UL
        0x7FF0000000000000UL
        0xFFF0000000000000UL
        0x7FF8000000000001UL
        0x7FF0000000000001UL
        0xFFF8000000000000UL
        0x0000000000000001UL
        0x800FFFFFFFFFFFFFUL
        0x7FEFFFFFFFFFFFFFUL
    |]

/// A deterministic array of the given dtype and shape: a third of the elements special values, the rest random bits.
let makeArray (dtype: DType) (shape: int[]) (seed: int) : NdArray =
    let rng = Random seed
    let n = Array.fold (*) 1 shape

    let pick (specials: 'a[]) (random: unit -> 'a) =
        Array.init n (fun _ ->
            if rng.Next 3 = 0 then
                specials.[rng.Next specials.Length]
            else
                random ())

    let r16 () = uint16 (rng.Next 65536)
    let r32 () = uint32 (rng.NextInt64(0L, 1L <<< 32))
    let r64 () = (uint64 (r32 ()) <<< 32) ||| uint64 (r32 ())

    match dtype with
    | DType.F16 -> NdArray.Create(pick special16 r16 |> Array.map BitConverter.UInt16BitsToHalf, shape)
    | DType.BF16 -> NdArray.Create(pick specialBf16 r16 |> Array.map BFloat16.FromBits, shape)
    | DType.F32 -> NdArray.Create(pick special32 r32 |> Array.map BitConverter.UInt32BitsToSingle, shape)
    | DType.F64 -> NdArray.Create(pick special64 r64 |> Array.map BitConverter.UInt64BitsToDouble, shape)
    | DType.I32 -> NdArray.Create(pick [| 0; -1; Int32.MinValue; Int32.MaxValue |] (fun () -> int (r32 ())), shape)
    | DType.I64 -> NdArray.Create(pick [| 0L; -1L; Int64.MinValue; Int64.MaxValue |] (fun () -> int64 (r64 ())), shape)
    | DType.U8 -> NdArray.Create(pick [| 0uy; 255uy |] (fun () -> byte (rng.Next 256)), shape)
    | DType.Bool -> NdArray.Create(Array.init n (fun _ -> rng.Next 2 = 1), shape)
    | _ -> failwith "unknown dtype"

/// One generated array, printed by its recipe so that a failing case can be rebuilt.
type Case =
    {
        DType: DType
        Shape: int list
        Seed: int
    }

    member c.Array = makeArray c.DType (Array.ofList c.Shape) c.Seed

let dimGen = Gen.frequency [ 1, Gen.constant 0; 6, Gen.elements [ 1; 2; 3; 5; 7 ] ]

let caseGen dtypes =
    gen {
        let! dtype = Gen.elements dtypes
        let! rank = Gen.choose (0, 4)
        let! shape = Gen.listOfLength rank dimGen
        let! seed = Gen.choose (0, Int32.MaxValue - 1)
        return { DType = dtype; Shape = shape; Seed = seed }
    }

let namePool = [| "logits"; "q"; "x.y"; "with space"; "naïve"; "a/b"; "_0" |]

/// Up to four arrays with distinct names drawn from awkward ones.
let setGen dtypes =
    gen {
        let! k = Gen.choose (0, 4)
        let! cases = Gen.listOfLength k (caseGen dtypes)
        let! names = Gen.shuffle namePool
        return List.zip (List.ofArray names.[.. k - 1]) cases
    }

let materialize (set: (string * Case) list) = set |> List.map (fun (n, c) -> n, c.Array)
let pairs (set: (string * NdArray) list) = set |> List.map (fun (n, a) -> Collections.Generic.KeyValuePair(n, a))

/// A stream that cannot seek and returns at most 1000 bytes per read, like a zip entry or a pipe.
type ForwardOnlyStream(bytes: byte[]) =
    inherit Stream()
    let mutable pos = 0
    override _.CanRead = true
    override _.CanSeek = false
    override _.CanWrite = false
    override _.Length = raise (NotSupportedException())

    override _.Position
        with get () = raise (NotSupportedException())
        and set _ = raise (NotSupportedException())

    override _.Flush() = ()

    override _.Read(buffer: byte[], offset: int, count: int) =
        let n = min count (bytes.Length - pos) |> min 1000
        Array.blit bytes pos buffer offset n
        pos <- pos + n
        n

    override _.Seek(_, _) = raise (NotSupportedException())
    override _.SetLength _ = raise (NotSupportedException())
    override _.Write(_, _, _) = raise (NotSupportedException())

let npzBytes (set: (string * NdArray) list) (compress: bool) =
    use ms = new MemoryStream()
    Npz.Write(ms, pairs set, compress)
    ms.ToArray()

let safetensorsBytes (set: (string * NdArray) list) =
    use ms = new MemoryStream()
    SafeTensors.Write(ms, pairs set)
    ms.ToArray()

/// The compression method of every entry, read from the zip's central directory (no archive comment).
let zipMethods (bytes: byte[]) =
    let u16 i = int bytes.[i] ||| (int bytes.[i + 1] <<< 8)
    let u32 i = BitConverter.ToUInt32(bytes, i)
    let eocd = bytes.Length - 22
    Assert.That(u32 eocd, eq 0x06054b50u, "end of central directory record")

    let rec walk p remaining acc =
        if remaining = 0 then
            List.rev acc
        else
            Assert.That(u32 p, eq 0x02014b50u, "central directory header")
            walk (p + 46 + u16 (p + 28) + u16 (p + 30) + u16 (p + 32)) (remaining - 1) (u16 (p + 10) :: acc)

    walk (int (u32 (eocd + 16))) (u16 (eocd + 10)) []

// ---------------------------------------------------------------------------------------------------------
// Round trips (theorems tensorio.npy-roundtrip, tensorio.npz-roundtrip, tensorio.safetensors-roundtrip).

let ``npy write then read is the identity on bit patterns`` () =
    Prop.forAll (Arb.fromGen (caseGen npyDTypes)) (fun case ->
        let a = case.Array
        let file = Npy.ToBytes a
        assertSame "from bytes" a (Npy.Read(file, "mem.npy"))
        assertSame "from a seekable stream" a (Npy.Read(new MemoryStream(file), "mem.npy"))
        assertSame "from a forward-only stream" a (Npy.Read(new ForwardOnlyStream(file), "mem.npy"))
        // Writing what was read reproduces the file byte for byte.
        Assert.That(Npy.ToBytes(Npy.Read(file, "mem.npy")), eq file, "rewrite")
        // numpy's layout: version 1.0, header padded so the data starts at a multiple of 64, ending in '\n'.
        let dataStart = file.Length - (littleEndian a).Length
        Assert.That(file.[6], eq 1uy, "major version")
        Assert.That(dataStart % 64, eq 0, "data alignment")
        Assert.That(file.[dataStart - 1], eq (byte '\n'), "header ends in a newline")
        Assert.That(file.[dataStart..], eq (littleEndian a), "data bytes"))

let ``npz write then read is the identity on names and bit patterns`` () =
    Prop.forAll (Arb.fromGen (Gen.zip (setGen npyDTypes) (Gen.elements [ false; true ]))) (fun (set, compress) ->
        let arrays = materialize set
        let file = npzBytes arrays compress
        assertSameSet "seekable" arrays (Npz.Read(new MemoryStream(file), "mem.npz"))
        assertSameSet "forward-only" arrays (Npz.Read(new ForwardOnlyStream(file), "mem.npz"))
        // Stored entries for savez, deflated ones for savez_compressed (zip methods 0 and 8).
        Assert.That(zipMethods file, eq (List.replicate arrays.Length (if compress then 8 else 0)), "compression methods")
        // Deterministic: writing what was read reproduces the archive byte for byte.
        let again =
            Npz.Read(new MemoryStream(file), "mem.npz") |> Seq.map (fun kv -> kv.Key, kv.Value) |> List.ofSeq

        Assert.That(npzBytes again compress, eq file, "rewrite"))

let ``safetensors write then read is the identity on names and bit patterns`` () =
    Prop.forAll (Arb.fromGen (setGen allDTypes)) (fun set ->
        let arrays = materialize set
        let file = safetensorsBytes arrays
        assertSameSet "seekable" arrays (SafeTensors.Read(new MemoryStream(file), "mem.safetensors"))
        assertSameSet "forward-only" arrays (SafeTensors.Read(new ForwardOnlyStream(file), "mem.safetensors"))
        let headerLength = BitConverter.ToUInt64(file, 0)
        Assert.That(headerLength % 8UL, eq 0UL, "header padded to 8 bytes")
        Assert.That(file.[8], eq (byte '{'), "header starts with '{'")
        // The buffer is the arrays' bytes in insertion order.
        let buffer = file.[8 + int headerLength ..]
        Assert.That(buffer, eq (arrays |> List.map (snd >> littleEndian) |> Array.concat), "data buffer")

        let again =
            SafeTensors.Read(new MemoryStream(file), "mem.safetensors")
            |> Seq.map (fun kv -> kv.Key, kv.Value)
            |> List.ofSeq

        Assert.That(safetensorsBytes again, eq file, "rewrite"))

let ``npy writer switches to version 2.0 when the header outgrows 65535 bytes`` () =
    // 30000 dimensions of 1: the shape alone takes about 90000 characters.
    let shape = Array.create 30000 1
    let a = NdArray.Create([| 2.5f |], shape)
    let file = Npy.ToBytes a
    Assert.That(file.[6], eq 2uy, "major version")
    let headerLength = BitConverter.ToUInt32(file, 8)
    Assert.That((12u + headerLength) % 64u, eq 0u, "data alignment")
    assertSame "version 2.0" a (Npy.Read(file, "long.npy"))

// ---------------------------------------------------------------------------------------------------------
// Dispatch by extension (theorem tensorio.by-extension).

let withTempDir (f: string -> unit) =
    let dir = Path.Combine(Path.GetTempPath(), "tensorio-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory dir |> ignore

    try
        f dir
    finally
        Directory.Delete(dir, true)

let ``TensorFile reads and writes each format by extension`` () =
    withTempDir (fun dir ->
        let arrays =
            [
                "logits", makeArray DType.F32 [| 3; 4 |] 1
                "experts", makeArray DType.I64 [| 3; 2 |] 2
                "mask", makeArray DType.Bool [| 5 |] 3
            ]

        for file in [ "a.npz"; "b.safetensors"; "C.NPZ"; "d.SafeTensors" ] do
            let path = Path.Combine(dir, file)
            TensorFile.Write(path, pairs arrays)
            assertSameSet file arrays (TensorFile.Read path)

        let npy = Path.Combine(dir, "scores.npy")
        TensorFile.Write(npy, pairs [ "ignored", snd arrays.[0] ])
        assertSameSet "scores.npy" [ "scores", snd arrays.[0] ] (TensorFile.Read npy)
        // The .npz written by TensorFile uses stored entries.
        Assert.That(zipMethods (File.ReadAllBytes(Path.Combine(dir, "a.npz"))), eq [ 0; 0; 0 ]))

let expectFailure (arrayName: string) (fragments: string list) (read: unit -> obj) =
    let e = throws<TensorFileException> (fun () -> read () |> ignore)

    for f in fragments do
        Assert.That(e.Message, Does.Contain f)

    Assert.That(e.ArrayName, eq arrayName, "array named by the exception")

    if not (isNull arrayName) then
        Assert.That(e.Message, Does.Contain $"array '{arrayName}': ")

    Assert.That(e.Message.IndexOfAny [| '\n'; '\r' |], eq -1, "one-line message")
    e

let ``TensorFile rejects unknown extensions missing files and arrays a format cannot hold`` () =
    withTempDir (fun dir ->
        let txt = Path.Combine(dir, "in.txt")
        File.WriteAllText(txt, "hello")

        expectFailure null [ txt; "unknown tensor file extension '.txt'" ] (fun () -> box (TensorFile.Read txt))
        |> ignore

        expectFailure null [ "unknown tensor file extension" ] (fun () ->
            TensorFile.Write(txt, [])
            null)
        |> ignore

        let missing = Path.Combine(dir, "missing.npz")
        let e = expectFailure null [ missing; "file not found" ] (fun () -> box (TensorFile.Read missing))
        Assert.That(e.FilePath, eq missing)

        expectFailure null [ "file not found" ] (fun () -> box (TensorFile.Read(Path.Combine(dir, "no", "x.safetensors"))))
        |> ignore

        let two = pairs [ "a", makeArray DType.F32 [| 2 |] 1; "b", makeArray DType.F32 [| 2 |] 2 ]

        expectFailure null [ "exactly one array, but 2 were given" ] (fun () ->
            TensorFile.Write(Path.Combine(dir, "x.npy"), two)
            null)
        |> ignore

        let bf = pairs [ "h", makeArray DType.BF16 [| 2 |] 1 ]

        expectFailure "h" [ "bf16 has no numpy dtype" ] (fun () ->
            TensorFile.Write(Path.Combine(dir, "x.npz"), bf)
            null)
        |> ignore

        expectFailure "h" [ "bf16 has no numpy dtype" ] (fun () ->
            TensorFile.Write(Path.Combine(dir, "x.npy"), bf)
            null)
        |> ignore)

// ---------------------------------------------------------------------------------------------------------
// Malformed .npy files (theorem tensorio.messages).

let magic = [| 0x93uy; byte 'N'; byte 'U'; byte 'M'; byte 'P'; byte 'Y' |]

/// An .npy file with a hand-written header (not padded unless the text is) and raw data bytes.
let npyRaw (major: byte) (header: string) (data: byte[]) =
    let h =
        if major = 3uy then
            Encoding.UTF8.GetBytes header
        else
            Encoding.Latin1.GetBytes header

    let length =
        if major = 1uy then
            BitConverter.GetBytes(uint16 h.Length)
        else
            BitConverter.GetBytes(uint32 h.Length)

    Array.concat [ magic; [| major; 0uy |]; length; h; data ]

let readNpy (bytes: byte[]) () = box (Npy.Read(bytes, "bad.npy"))
let f32x12 () = Npy.ToBytes(makeArray DType.F32 [| 3; 4 |] 7)

let ``npy truncated data is rejected with the byte counts`` () =
    let file = f32x12 ()
    // 3 * 4 elements * 4 bytes = 48 bytes of data; 8 are cut off.
    expectFailure null [ "bad.npy: "; "shape (3, 4) needs 48 bytes but 40 remain" ] (readNpy file.[.. file.Length - 9])
    |> ignore

    expectFailure null [ "shape (3, 4) needs 48 bytes but 40 remain" ] (fun () ->
        box (Npy.Read(new ForwardOnlyStream(file.[.. file.Length - 9]), "bad.npy")))
    |> ignore

let ``npy trailing bytes are rejected with the byte counts`` () =
    let file = Array.append (f32x12 ()) [| 1uy; 2uy; 3uy; 4uy; 5uy |]
    expectFailure null [ "shape (3, 4) needs 48 bytes but 53 remain" ] (readNpy file) |> ignore

    expectFailure null [ "shape (3, 4) needs 48 bytes but 53 remain" ] (fun () -> box (Npy.Read(new ForwardOnlyStream(file), "bad.npy")))
    |> ignore

let ``npy truncated header and preamble are rejected`` () =
    let file = f32x12 ()

    expectFailure null [ "truncated header"; "header length is 118 bytes but only 20 remain" ] (readNpy file.[..29])
    |> ignore

    expectFailure null [ "truncated header"; "only 20 remain" ] (fun () -> box (Npy.Read(new ForwardOnlyStream(file.[..29]), "bad.npy")))
    |> ignore

    expectFailure null [ "truncated file"; "7 bytes" ] (readNpy file.[..6]) |> ignore
    expectFailure null [ "truncated file"; "9 bytes" ] (readNpy file.[..8]) |> ignore
    expectFailure null [ "truncated file"; "0 bytes" ] (readNpy [||]) |> ignore

let ``npy bad magic and unsupported versions are rejected`` () =
    let file = f32x12 ()
    let zip = Array.append [| byte 'P'; byte 'K'; 3uy; 4uy |] file.[4..]
    expectFailure null [ "not an npy file: bad magic 50 4B 03 04 50 59" ] (readNpy zip) |> ignore
    let v4 = Array.copy file
    v4.[6] <- 4uy
    expectFailure null [ "unsupported npy format version 4.0" ] (readNpy v4) |> ignore
    let v11 = Array.copy file
    v11.[7] <- 1uy
    expectFailure null [ "unsupported npy format version 1.1" ] (readNpy v11) |> ignore

let ``npy malformed header dicts are rejected naming the fault`` (header: string, fragment: string) =
    expectFailure null [ fragment ] (readNpy (npyRaw 1uy header (Array.zeroCreate 8))) |> ignore

let ``npy deeply nested header is rejected without exhausting the stack`` () =
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + String('(', 100000) + "}"
    expectFailure null [ "nesting deeper than 32 levels" ] (readNpy (npyRaw 2uy header [||])) |> ignore

let ``npy header dicts in any key order and spelling are accepted`` () =
    let values = [| 1L; -2L; Int64.MaxValue; Int64.MinValue; 0L; 7L |]
    let data = values |> Array.collect BitConverter.GetBytes
    let expected = NdArray.Create(values, 2, 3)

    for header in
        [
            "{'shape': (2, 3), 'fortran_order': False, 'descr': '<i8'}"
            "{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (2L, 3L)}\n"
            "  {'descr':'=i8','fortran_order':False,'shape':[2,3],}   \n"
            "{'descr': 'i8', 'fortran_order': False, 'shape': (2, 3)}"
        ] do
        assertSame header expected (Npy.Read(npyRaw 1uy header data, "ok.npy"))
    // '?' is numpy's character code for bool; one-byte types ignore the byte order.
    let bools =
        Npy.Read(npyRaw 1uy "{'descr': '?', 'fortran_order': False, 'shape': (3,)}" [| 1uy; 0uy; 1uy |], "ok.npy")

    assertSame "'?'" (NdArray.Create([| true; false; true |], 3)) bools

    let u8 =
        Npy.Read(npyRaw 3uy "{'descr': '>u1', 'fortran_order': False, 'shape': ()}" [| 200uy |], "ok.npy")

    assertSame "'>u1'" (NdArray.Scalar 200uy) u8

let ``npy negative and oversized dimensions are rejected`` () =
    expectFailure
        null
        [ "shape (3, -1) has a negative dimension -1" ]
        (readNpy (npyRaw 1uy "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1)}" [||]))
    |> ignore

    expectFailure
        null
        [ "shape (3000000000,) has dimension 3000000000, beyond 2147483647" ]
        (readNpy (npyRaw 1uy "{'descr': '<f4', 'fortran_order': False, 'shape': (3000000000,)}" [||]))
    |> ignore

let ``npy unknown dtypes are rejected naming the dtype`` (descr: string) =
    let header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,)}}"

    expectFailure null [ $"unknown dtype '{descr}'" ] (readNpy (npyRaw 1uy header (Array.zeroCreate 32)))
    |> ignore

let ``npy big-endian or Fortran-ordered headers with invalid parts are still rejected`` () =
    expectFailure
        null
        [ "unknown dtype '>f3'" ]
        (readNpy (npyRaw 1uy "{'descr': '>f3', 'fortran_order': True, 'shape': (2, 2)}" (Array.zeroCreate 12)))
    |> ignore

    expectFailure
        null
        [ "'fortran_order' must be True or False, not 1" ]
        (readNpy (npyRaw 1uy "{'descr': '>f4', 'fortran_order': 1, 'shape': (2, 3)}" (Array.zeroCreate 24)))
    |> ignore

    expectFailure
        null
        [ "shape (2, 3) needs 48 bytes but 40 remain" ]
        (readNpy (npyRaw 1uy "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3)}" (Array.zeroCreate 40)))
    |> ignore
    // A bad bool byte is reported at its C-order index: Fortran offset 1 of a (2, 2) array is element (1, 0).
    expectFailure
        null
        [ "bool element at (1, 0) is the byte 0x07" ]
        (readNpy (npyRaw 1uy "{'descr': '|b1', 'fortran_order': True, 'shape': (2, 2)}" [| 1uy; 7uy; 0uy; 1uy |]))
    |> ignore

let ``npy big-endian and Fortran-ordered elements are converted to native C order`` () =
    // Independent expectation: element (i, j) of a (2, 3) array holds 10 i + j, written by hand in each layout.
    let cOrder = [| 0; 1; 2; 10; 11; 12 |]
    let fOrder = [| 0; 10; 1; 11; 2; 12 |]

    let bytesOf (bigEndian: bool) (values: int[]) =
        values
        |> Array.collect (fun v -> let b = BitConverter.GetBytes v in if bigEndian then Array.rev b else b)

    for descr, fortran, values in [ "<i4", "True", fOrder; ">i4", "False", cOrder; ">i4", "True", fOrder ] do
        let header = $"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': (2, 3)}}"
        let a = Npy.Read(npyRaw 1uy header (bytesOf (descr.StartsWith ">") values), "ok.npy")
        Assert.That(a.DType, eq DType.I32, header)
        Assert.That(List.ofSeq a.Shape, eq [ 2; 3 ], header)
        Assert.That(a.RawValues :?> int[], eq cOrder, header)

let ``npy bool bytes other than 0 and 1 are rejected at their index`` () =
    expectFailure
        null
        [ "bool element at (1, 0) is the byte 0x02" ]
        (readNpy (npyRaw 1uy "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2)}" [| 1uy; 0uy; 2uy; 1uy |]))
    |> ignore

let ``npy version 3.0 header must be UTF-8`` () =
    let header = Encoding.Latin1.GetBytes "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'é': 1}"

    let file =
        Array.concat [ magic; [| 3uy; 0uy |]; BitConverter.GetBytes(uint32 header.Length); header; Array.zeroCreate 4 ]

    expectFailure null [ "header is not valid UTF-8" ] (readNpy file) |> ignore

// ---------------------------------------------------------------------------------------------------------
// Giant declared sizes (theorem tensorio.bounded-allocation).

/// Runs f on this thread; returns the bytes it allocated and its exception.
/// (Allocation, not time, is the property: speed is never asserted in tests on these shared machines.)
let measure (f: unit -> unit) =
    let before = GC.GetAllocatedBytesForCurrentThread()

    let error =
        try
            f ()
            null
        with e ->
            e

    GC.GetAllocatedBytesForCurrentThread() - before, error

let assertCheapRejection (limitBytes: int64) (fragments: string list) (f: unit -> unit) =
    let allocated, error = measure f

    match error with
    | :? TensorFileException as e ->
        for fr in fragments do
            Assert.That(e.Message, Does.Contain fr)
    | null -> Assert.Fail "the reader accepted the file"
    | e -> Assert.Fail $"expected TensorFileException, got {e.GetType().Name}: {e.Message}"

    Assert.That(allocated, Is.LessThan limitBytes, "bytes allocated")

let ``npy giant declared shape on a tiny file is rejected without allocating it`` () =
    let giant =
        npyRaw 1uy "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000)}" (Array.zeroCreate 16)
    // 10^15 elements * 8 bytes.
    assertCheapRejection (1L <<< 20) [ "shape (100000, 100000, 100000) needs 8000000000000000 bytes but 16 remain" ] (fun () ->
        Npy.Read(giant, "giant.npy") |> ignore)

    assertCheapRejection (1L <<< 20) [ "needs 8000000000000000 bytes" ] (fun () ->
        Npy.Read(new ForwardOnlyStream(giant), "giant.npy") |> ignore)
    // 1 GiB: within the per-array limit, so a forward-only stream is read as far as it goes.
    let gib =
        npyRaw 1uy "{'descr': '|u1', 'fortran_order': False, 'shape': (1073741824,)}" (Array.zeroCreate 16)

    assertCheapRejection (1L <<< 20) [ "needs 1073741824 bytes but 16 remain" ] (fun () ->
        Npy.Read(new ForwardOnlyStream(gib), "gib.npy") |> ignore)
    // The product of the dimensions overflows 64 bits.
    let overflow =
        npyRaw 1uy "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647, 2147483647)}" [||]

    assertCheapRejection (1L <<< 20) [ "has more elements than 64-bit sizes can count" ] (fun () ->
        Npy.Read(overflow, "overflow.npy") |> ignore)
    // A version 2.0 header length of 4 GiB - 1 on a 20-byte file.
    let longHeader =
        Array.concat [ magic; [| 2uy; 0uy |]; BitConverter.GetBytes UInt32.MaxValue; Array.zeroCreate 8 ]

    assertCheapRejection (1L <<< 20) [ "header length is 4294967295 bytes but only 8 remain" ] (fun () ->
        Npy.Read(longHeader, "long.npy") |> ignore)

    assertCheapRejection (1L <<< 20) [ "header length 4294967295 exceeds this reader's limit" ] (fun () ->
        Npy.Read(new ForwardOnlyStream(longHeader), "long.npy") |> ignore)

/// A deflated .npz whose single entry holds the given bytes, optionally with its declared uncompressed size
/// rewritten in both the local header and the central directory.
let deflatedNpz (entryName: string) (content: byte[]) (declaredSize: uint32 option) =
    let ms = new MemoryStream()

    do
        use zip = new ZipArchive(ms, ZipArchiveMode.Create, true)
        let entry = zip.CreateEntry(entryName, CompressionLevel.Optimal)
        use s = entry.Open()
        s.Write(content, 0, content.Length)

    let bytes = ms.ToArray()

    match declaredSize with
    | Some size ->
        let put offset = Array.blit (BitConverter.GetBytes size) 0 bytes offset 4
        Assert.That(BitConverter.ToUInt32(bytes, 0), eq 0x04034b50u, "local header first")
        put 22
        let eocd = bytes.Length - 22
        let central = int (BitConverter.ToUInt32(bytes, eocd + 16))
        Assert.That(BitConverter.ToUInt32(bytes, central), eq 0x02014b50u, "central directory header")
        put (central + 24)
    | None -> ()

    bytes

let ``npz entries claiming huge sizes are rejected without allocating them`` () =
    // The npy header says 1 GiB and so does the zip directory, but only 10 bytes of data follow.
    let header = npyRaw 1uy "{'descr': '|u1', 'fortran_order': False, 'shape': (1073741824,)}" [||]
    let content = Array.append header (Array.zeroCreate 10)
    let file = deflatedNpz "big.npy" content (Some(uint32 header.Length + (1u <<< 30)))
    assertCheapRejection (4L <<< 20) [ "array 'big': " ] (fun () -> Npz.Read(new MemoryStream(file), "big.npz") |> ignore)
    // The npy header claims 10^15 elements while the zip directory is honest.
    let giant =
        Array.append (npyRaw 1uy "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000)}" [||]) (Array.zeroCreate 16)

    let file2 = deflatedNpz "giant.npy" giant None

    assertCheapRejection
        (4L <<< 20)
        [ "array 'giant': shape (100000, 100000, 100000) needs 8000000000000000 bytes but 16 remain" ]
        (fun () -> Npz.Read(new MemoryStream(file2), "giant.npz") |> ignore)

// ---------------------------------------------------------------------------------------------------------
// Malformed .npz archives (theorem tensorio.messages).

/// A stored zip with the given entries (duplicates allowed).
let zipOf (entries: (string * byte[]) list) =
    let ms = new MemoryStream()

    do
        use zip = new ZipArchive(ms, ZipArchiveMode.Create, true)

        for name, content in entries do
            let e = zip.CreateEntry(name, CompressionLevel.NoCompression)
            use s = e.Open()
            s.Write(content, 0, content.Length)

    ms.ToArray()

let readNpz (bytes: byte[]) () = box (Npz.Read(new MemoryStream(bytes), "bad.npz"))

let ``npz that is not a zip is rejected`` () =
    expectFailure null [ "bad.npz: not a readable zip archive" ] (readNpz (f32x12 ())) |> ignore
    expectFailure null [ "not a readable zip archive" ] (readNpz [||]) |> ignore

let ``npz entries that are not npy files or repeat a name are rejected`` () =
    let ok = f32x12 ()

    expectFailure null [ "entry 'notes.txt' is not an .npy file" ] (readNpz (zipOf [ "x.npy", ok; "notes.txt", [| 1uy |] ]))
    |> ignore

    expectFailure "x" [ "the entry 'x.npy' appears twice" ] (readNpz (zipOf [ "x.npy", ok; "x.npy", ok ]))
    |> ignore

let ``npz malformed entries are rejected naming the array`` () =
    let ok = f32x12 ()
    let truncated = ok.[.. ok.Length - 5]

    expectFailure
        "logits"
        [ "bad.npz: array 'logits': shape (3, 4) needs 48 bytes but 44 remain" ]
        (readNpz (zipOf [ "fine.npy", ok; "logits.npy", truncated ]))
    |> ignore

    expectFailure
        "weights"
        [ "unknown dtype '<c16'" ]
        (readNpz (
            zipOf
                [
                    "weights.npy", npyRaw 1uy "{'descr': '<c16', 'fortran_order': False, 'shape': ()}" (Array.zeroCreate 16)
                ]
        ))
    |> ignore

    expectFailure "q" [ "bad magic" ] (readNpz (deflatedNpz "q.npy" (Array.zeroCreate 100) None))
    |> ignore
    // Damaged compressed data: every byte of the deflate stream flipped.
    let damaged = deflatedNpz "q.npy" ok None
    let dataStart = 30 + int (BitConverter.ToUInt16(damaged, 26)) + int (BitConverter.ToUInt16(damaged, 28))
    let compressed = int (BitConverter.ToUInt32(damaged, 18))

    for i in dataStart .. dataStart + compressed - 1 do
        damaged.[i] <- damaged.[i] ^^^ 0xA5uy

    expectFailure "q" [ "array 'q': " ] (readNpz damaged) |> ignore

let ``npz writer rejects repeated names and bf16`` () =
    let a = makeArray DType.F32 [| 2 |] 1

    throws<ArgumentException> (fun () -> Npz.Write(new MemoryStream(), pairs [ "a", a; "a", a ]))
    |> ignore

    let e =
        throws<ArgumentException> (fun () -> Npz.Write(new MemoryStream(), pairs [ "h", makeArray DType.BF16 [| 2 |] 1 ]))

    Assert.That(e.Message, Does.Contain "bf16")

    withTempDir (fun dir ->
        let path = Path.Combine(dir, "dup.npz")

        expectFailure "a" [ "the name appears twice" ] (fun () ->
            Npz.Write(path, pairs [ "a", a; "a", a ])
            null)
        |> ignore)

// ---------------------------------------------------------------------------------------------------------
// Malformed .safetensors files (theorem tensorio.messages).

/// A .safetensors file with a hand-written header (not padded) and buffer.
let stRaw (json: string) (buffer: byte[]) =
    let h = Encoding.UTF8.GetBytes json
    Array.concat [ BitConverter.GetBytes(uint64 h.Length); h; buffer ]

let readSt (bytes: byte[]) () = box (SafeTensors.Read(new MemoryStream(bytes), "bad.safetensors"))
let readStForward (bytes: byte[]) () = box (SafeTensors.Read(new ForwardOnlyStream(bytes), "bad.safetensors"))

let expectStFailure arrayName fragments bytes =
    expectFailure arrayName ("bad.safetensors: " :: fragments) (readSt bytes) |> ignore
    expectFailure arrayName fragments (readStForward bytes) |> ignore

let ``safetensors with a bad header length or bad JSON is rejected`` () =
    expectStFailure null [ "truncated file: 5 bytes" ] [| 1uy; 2uy; 3uy; 4uy; 5uy |]
    let tooLong = Array.append (BitConverter.GetBytes 1000UL) (Encoding.UTF8.GetBytes "{}")

    expectFailure null [ "truncated header: the header length is 1000 bytes but only 2 remain" ] (readSt tooLong)
    |> ignore

    expectFailure null [ "truncated header: the header length is 1000 bytes but only 2 remain" ] (readStForward tooLong)
    |> ignore

    expectStFailure null [ "the header is not valid JSON" ] (stRaw "{\"a\": {\"dtype\": \"F32\",}" [||])
    expectStFailure null [ "the header must be a JSON object, not an array" ] (stRaw "[]" [||])

    expectStFailure
        null
        [ "the header is not valid UTF-8" ]
        (Array.concat [ BitConverter.GetBytes 4UL; [| byte '"'; 0xC3uy; 0x28uy; byte '"' |] ])

let ``safetensors entries with unknown dtypes or bad fields are rejected naming the array`` () =
    expectStFailure
        "w"
        [ "unknown dtype 'C64'" ]
        (stRaw """{"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}""" (Array.zeroCreate 8))

    expectStFailure "w" [ "no 'data_offsets'" ] (stRaw """{"w": {"dtype": "F32", "shape": [1]}}""" (Array.zeroCreate 4))
    expectStFailure "w" [ "no 'shape'" ] (stRaw """{"w": {"dtype": "F32", "data_offsets": [0, 4]}}""" (Array.zeroCreate 4))

    expectStFailure
        "w"
        [ "'shape' must be an array of non-negative integers, but holds -1" ]
        (stRaw """{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""" (Array.zeroCreate 4))

    expectStFailure
        "w"
        [ "'data_offsets' must be two non-negative integers" ]
        (stRaw """{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}""" (Array.zeroCreate 4))

    expectStFailure "w" [ "the header entry must be an object" ] (stRaw """{"w": 3}""" [||])

    expectStFailure
        "w"
        [ "the name appears twice in the header" ]
        (stRaw
            """{"w": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}}"""
            [| 1uy |])

    expectStFailure
        null
        [ "'__metadata__' must map strings to strings, but 'n' holds a number" ]
        (stRaw """{"__metadata__": {"n": 1}}""" [||])

    expectStFailure
        "b"
        [ "bool element at (1) is the byte 0x07" ]
        (stRaw """{"b": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}""" [| 1uy; 7uy |])

let ``safetensors offsets out of range or disagreeing with the shape are rejected`` () =
    expectStFailure
        "w"
        [ "data_offsets [0, 16] run past the end of the 8-byte data buffer" ]
        (stRaw """{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}""" (Array.zeroCreate 8))

    expectStFailure
        "w"
        [ "data_offsets [8, 4] end before they begin" ]
        (stRaw """{"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}""" (Array.zeroCreate 8))
    // 2 * 3 elements * 4 bytes = 24.
    expectStFailure
        "w"
        [ "shape (2, 3) of F32 needs 24 bytes but data_offsets [0, 20] span 20" ]
        (stRaw """{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}""" (Array.zeroCreate 20))

    expectStFailure
        "w"
        [ "needs more bytes than 64-bit sizes can count" ]
        (stRaw """{"w": {"dtype": "F64", "shape": [2147483647, 2147483647, 2147483647], "data_offsets": [0, 8]}}""" (Array.zeroCreate 8))

let ``safetensors overlapping gapped or incomplete buffers are rejected`` () =
    expectStFailure
        "b"
        [ "data_offsets [8, 24] overlap array 'a' at [0, 16]" ]
        (stRaw
            """{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}, "b": {"dtype": "F64", "shape": [2], "data_offsets": [8, 24]}}"""
            (Array.zeroCreate 24))

    expectStFailure
        "b"
        [ "data_offsets [20, 28] leave a gap of 4 bytes after array 'a' ends at 16" ]
        (stRaw
            """{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}, "b": {"dtype": "F64", "shape": [1], "data_offsets": [20, 28]}}"""
            (Array.zeroCreate 28))

    expectStFailure
        "a"
        [ "leave a gap of 8 bytes after the start of the buffer" ]
        (stRaw """{"a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}""" (Array.zeroCreate 16))

    expectStFailure
        null
        [ "the data buffer has 20 bytes but the arrays cover only the first 16 (4 bytes unaccounted for)" ]
        (stRaw """{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}}""" (Array.zeroCreate 20))

let ``safetensors accepts metadata zero-size arrays and any header order`` () =
    let buffer = Array.concat [ BitConverter.GetBytes 1.5; BitConverter.GetBytes -2.25f ]

    let file =
        stRaw
            """{"b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}, "__metadata__": {"format": "pt"}, "e": {"dtype": "I32", "shape": [0, 3], "data_offsets": [8, 8]}, "a": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}      """
            buffer

    let read = SafeTensors.Read(new MemoryStream(file), "ok.safetensors")

    assertSameSet
        "header order"
        [
            "b", NdArray.Create([| -2.25f |], 1)
            "e", NdArray.Create(Array.empty<int>, 0, 3)
            "a", NdArray.Scalar 1.5
        ]
        read

let ``safetensors giant header length on a tiny file is rejected without allocating it`` () =
    let file = Array.append (BitConverter.GetBytes UInt64.MaxValue) (Encoding.UTF8.GetBytes "{}")

    assertCheapRejection (1L <<< 20) [ "truncated header: the header length is 18446744073709551615 bytes but only 2 remain" ] (fun () ->
        SafeTensors.Read(new MemoryStream(file), "giant.safetensors") |> ignore)

    assertCheapRejection (1L <<< 20) [ "exceeds the format's limit of 100000000 bytes" ] (fun () ->
        SafeTensors.Read(new ForwardOnlyStream(file), "giant.safetensors") |> ignore)

    let shape =
        stRaw """{"w": {"dtype": "F64", "shape": [100000, 100000, 100000], "data_offsets": [0, 8000000000000000]}}""" (Array.zeroCreate 8)

    assertCheapRejection (1L <<< 20) [ "data_offsets [0, 8000000000000000] run past the end of the 8-byte data buffer" ] (fun () ->
        SafeTensors.Read(new MemoryStream(shape), "giant.safetensors") |> ignore)

// ---------------------------------------------------------------------------------------------------------
// Every damaged file is rejected cleanly (theorems tensorio.rejects-malformed and tensorio.bounded-allocation).

type Format =
    | NpyFile
    | NpzStored
    | NpzDeflated
    | SafeTensorsFile

let formatGen = Gen.elements [ NpyFile; NpzStored; NpzDeflated; SafeTensorsFile ]

let fileOf (format: Format) (set: (string * Case) list) (single: Case) =
    match format with
    | NpyFile -> Npy.ToBytes single.Array
    | NpzStored -> npzBytes (materialize set) false
    | NpzDeflated -> npzBytes (materialize set) true
    | SafeTensorsFile -> safetensorsBytes (materialize set)

/// Reads a file of the format from a seekable stream (declared length known) or a forward-only one (not known).
let readAs (format: Format) (forwardOnly: bool) (bytes: byte[]) =
    let stream () : Stream =
        if forwardOnly then
            new ForwardOnlyStream(bytes)
        else
            new MemoryStream(bytes)

    match format with
    | NpyFile -> Npy.Read(stream (), "fuzz.npy") |> ignore
    | NpzStored
    | NpzDeflated -> Npz.Read(stream (), "fuzz.npz") |> ignore
    | SafeTensorsFile -> SafeTensors.Read(stream (), "fuzz.safetensors") |> ignore

let fileGen =
    gen {
        let! format = formatGen
        let! set = setGen (if format = SafeTensorsFile then allDTypes else npyDTypes)
        let! single = caseGen npyDTypes
        return format, set, single
    }

let ``every strict prefix of a valid file is rejected`` () =
    Prop.forAll (Arb.fromGen (Gen.zip fileGen (Gen.choose (0, Int32.MaxValue - 1)))) (fun ((format, set, single), cutSeed) ->
        let file = fileOf format set single
        let cut = cutSeed % file.Length

        for forwardOnly in [ false; true ] do
            throws<TensorFileException> (fun () -> readAs format forwardOnly file.[.. cut - 1]) |> ignore)

let ``bytes appended to an npy or safetensors file are rejected`` () =
    let cases = Gen.zip3 fileGen (Gen.elements [ NpyFile; SafeTensorsFile ]) (Gen.choose (1, 100))

    Prop.forAll (Arb.fromGen cases) (fun ((_, set, single), format, extra) ->
        let file = Array.append (fileOf format set single) (Array.create extra 0uy)

        for forwardOnly in [ false; true ] do
            throws<TensorFileException> (fun () -> readAs format forwardOnly file) |> ignore)

/// Damage a file in 1-3 places: flip a bit, overwrite a 1-8 byte run with 0xFF, or replace a byte. Half of the
/// places fall in the first 256 or last 128 bytes, where the headers and the zip directory live.
let damage (file: byte[]) (seed: int) =
    let rng = Random seed
    let bytes = Array.copy file

    for _ in 1 .. 1 + rng.Next 3 do
        if bytes.Length > 0 then
            let i =
                match rng.Next 4 with
                | 0 -> rng.Next(min 256 bytes.Length)
                | 1 -> bytes.Length - 1 - rng.Next(min 128 bytes.Length)
                | _ -> rng.Next bytes.Length

            match rng.Next 3 with
            | 0 -> bytes.[i] <- bytes.[i] ^^^ byte (1 <<< rng.Next 8)
            | 1 ->
                for k in i .. min (bytes.Length - 1) (i + rng.Next 8) do
                    bytes.[k] <- 0xFFuy
            | _ -> bytes.[i] <- byte (rng.Next 256)

    bytes

let ``damaged files are rejected with TensorFileException or read within bounded memory`` () =
    Prop.forAll (Arb.fromGen (Gen.zip fileGen (Gen.choose (0, Int32.MaxValue - 1)))) (fun ((format, set, single), seed) ->
        let file = damage (fileOf format set single) seed
        // A damaged file can claim any size; the reader allocates in proportion to what the file holds.
        // (Deflated entries may decompress to more than the file's length, but never to more than the
        // undamaged arrays' bytes.) 4 times file plus data, plus 2 MiB for buffers, bounds every read.
        let data =
            match format with
            | NpyFile -> (littleEndian single.Array).Length
            | _ -> materialize set |> List.sumBy (fun (_, a) -> (littleEndian a).Length)

        for forwardOnly in [ false; true ] do
            let allocated, error = measure (fun () -> readAs format forwardOnly file)

            match error with
            | null
            | :? TensorFileException -> ()
            | e -> Assert.Fail $"{format} (forward-only {forwardOnly}): {e.GetType().Name} escaped the reader: {e}"

            Assert.That(allocated, Is.LessThan(4L * int64 (file.Length + data) + (2L <<< 20)), "bytes allocated"))

// ---------------------------------------------------------------------------------------------------------
// Agreement with numpy itself (theorem tensorio.numpy-agreement).

let python = "/usr/bin/python3"

let run (args: string list) =
    let psi =
        ProcessStartInfo(python, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)

    for a in args do
        psi.ArgumentList.Add a

    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()

    if not (p.WaitForExit 120000) then
        p.Kill true
        failwith "python timed out"

    p.ExitCode, out.Result + err.Result

let requireNumpy () =
    let available = File.Exists python && fst (run [ "-c"; "import numpy" ]) = 0

    if not available then
        let message = $"numpy is not available to {python}; install it with: apt-get install -y python3-numpy"

        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase) then
            Assert.Fail message
        else
            Expecto.Tests.skiptest message

let dtypeOfDescr =
    dict
        [
            "<f2", DType.F16
            "<f4", DType.F32
            "<f8", DType.F64
            "<i4", DType.I32
            "<i8", DType.I64
            "|u1", DType.U8
            "|b1", DType.Bool
        ]

let parseShape (text: string) =
    if text = "" then
        []
    else
        text.Split ',' |> Array.map int |> List.ofArray

/// numpy writes every dtype and shape in every format version, plus savez and savez_compressed archives, and a
/// manifest line per array: file, npz key (or -), dtype string, shape, and the raw bytes as hex.
let numpyWriter =
    """
import os, sys, zipfile
import numpy as np
from numpy.lib import format as fmt

out = sys.argv[1]
rng = np.random.default_rng(20261122)
manifest = []

def make(code, shape):
    dt = np.dtype(code)
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == 'b':
        return (rng.integers(0, 2, size=n) == 1).reshape(shape)
    a = rng.integers(0, 256, size=n * dt.itemsize, dtype=np.uint8).view(dt).copy()
    if dt.kind == 'f':
        fi = np.finfo(dt)
        special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, fi.smallest_subnormal, -fi.tiny, fi.max], dtype=dt)
        # NaNs with payloads, by bit pattern: signalling (quiet bit clear) and negative quiet.
        nbits = dt.itemsize * 8
        exponent = {16: 5, 32: 8, 64: 11}[nbits]
        snan = ((1 << exponent) - 1) << (nbits - 1 - exponent) | 1
        negative_qnan = (1 << (nbits - 1)) | ((1 << exponent) - 1) << (nbits - 1 - exponent) | 1 << (nbits - 2 - exponent) | 5
        payloads = np.array([snan, negative_qnan], dtype='<u%d' % dt.itemsize).view(dt)
        special = np.concatenate([special, payloads])
        k = min(n, len(special))
        a[:k] = special[:k]
    return a.reshape(shape)

def line(file, key, a):
    manifest.append('\t'.join([file, key, a.dtype.str, ','.join(str(d) for d in a.shape), a.tobytes().hex()]))

arrays = {}
for code in ['<f2', '<f4', '<f8', '<i4', '<i8', '|u1', '|b1']:
    for shape in [(), (5,), (2, 3, 4), (0, 3)]:
        a = make(code, shape)
        name = code[1:] + '_' + 'x'.join(str(d) for d in shape)
        arrays[name] = a
        np.save(os.path.join(out, name + '_v1.npy'), a)
        line(name + '_v1.npy', '-', a)
        for major in (2, 3):
            file = name + '_v%d.npy' % major
            with open(os.path.join(out, file), 'wb') as f:
                fmt.write_array(f, a, version=(major, 0))
            line(file, '-', a)
arrays['naïve'] = make('<f4', (7,))
np.savez(os.path.join(out, 'all.npz'), **arrays)
np.savez_compressed(os.path.join(out, 'all_compressed.npz'), **arrays)
for file in ('all.npz', 'all_compressed.npz'):
    for key, a in arrays.items():
        line(file, key, a)
with zipfile.ZipFile(os.path.join(out, 'all_compressed.npz')) as z:
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
with open(os.path.join(out, 'manifest.tsv'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(manifest) + '\n')
"""

let ``files numpy writes are read with identical dtypes shapes and bits`` () =
    requireNumpy ()

    withTempDir (fun dir ->
        let script = Path.Combine(dir, "write.py")
        File.WriteAllText(script, numpyWriter)
        let code, output = run [ script; dir ]
        Assert.That(code, eq 0, output)

        let lines =
            File.ReadAllLines(Path.Combine(dir, "manifest.tsv"), Encoding.UTF8) |> Array.filter ((<>) "")

        Assert.That(lines.Length, eq (7 * 4 * 3 + 2 * (7 * 4 + 1)), "manifest lines")

        let archives =
            Collections.Generic.Dictionary<string, Collections.Generic.IReadOnlyDictionary<string, NdArray>>()

        for l in lines do
            let f = l.Split '\t'
            let file, key, descr, shape, hex = f.[0], f.[1], f.[2], parseShape f.[3], Convert.FromHexString f.[4]

            let array =
                if key = "-" then
                    let read = TensorFile.Read(Path.Combine(dir, file))
                    Assert.That(List.ofSeq read.Keys, eq [ Path.GetFileNameWithoutExtension file ])
                    Seq.head read.Values
                else
                    if not (archives.ContainsKey file) then
                        archives.[file] <- TensorFile.Read(Path.Combine(dir, file))

                    archives.[file].[key]

            let what = $"{file} {key}"
            Assert.That(array.DType, eq dtypeOfDescr.[descr], what)
            Assert.That(List.ofSeq array.Shape, eq shape, what)
            Assert.That(littleEndian array, eq hex, what)
        // Archive order is numpy's insertion order.
        let expectedKeys =
            lines
            |> Array.choose (fun l -> let f = l.Split '\t' in if f.[0] = "all.npz" then Some f.[1] else None)

        for file in [ "all.npz"; "all_compressed.npz" ] do
            Assert.That(Array.ofSeq archives.[file].Keys, eq expectedKeys, file))

/// numpy loads the files we wrote and compares them with a manifest of what they should hold.
let numpyReader =
    """
import os, sys, zipfile
import numpy as np
from numpy.lib import format as fmt

out = sys.argv[1]
errors = []
archives = {}
keys = {}
for row in open(os.path.join(out, 'manifest.tsv'), encoding='utf-8').read().splitlines():
    if not row:
        continue
    file, key, descr, shape, hexdata = row.split('\t')
    shape = tuple(int(d) for d in shape.split(',')) if shape else ()
    path = os.path.join(out, file)
    if key == '-':
        a = np.load(path, allow_pickle=False)
        with open(path, 'rb') as f:
            version = fmt.read_magic(f)
            fmt.read_array_header_1_0(f) if version == (1, 0) else fmt.read_array_header_2_0(f)
            if version != (1, 0) or f.tell() % 64 != 0:
                errors.append('%s: version %s, data at %d' % (file, version, f.tell()))
    else:
        if file not in archives:
            archives[file] = np.load(path, allow_pickle=False)
            keys[file] = []
        a = archives[file][key]
        keys[file].append(key)
    if a.dtype.str != descr or a.shape != shape or a.tobytes().hex() != hexdata:
        errors.append('%s %s: got %s %s %s, expected %s %s %s' % (file, key, a.dtype.str, a.shape, a.tobytes().hex()[:64], descr, shape, hexdata[:64]))
for file, z in archives.items():
    if list(z.files) != keys[file]:
        errors.append('%s: keys %s, expected %s' % (file, list(z.files), keys[file]))
    expected = zipfile.ZIP_DEFLATED if 'compressed' in file else zipfile.ZIP_STORED
    with zipfile.ZipFile(os.path.join(out, file)) as zf:
        for info in zf.infolist():
            if info.compress_type != expected:
                errors.append('%s: %s has compress_type %d' % (file, info.filename, info.compress_type))
print('\n'.join(errors))
sys.exit(1 if errors else 0)
"""

let ``files we write are loaded by numpy with identical dtypes shapes and bits`` () =
    requireNumpy ()

    withTempDir (fun dir ->
        let manifest = ResizeArray<string>()

        let line file key (a: NdArray) =
            let descr = dtypeOfDescr |> Seq.find (fun kv -> kv.Value = a.DType) |> _.Key

            manifest.Add(
                String.Join("\t", file, key, descr, String.Join(",", a.Shape), Convert.ToHexString(littleEndian a).ToLowerInvariant())
            )

        let arrays =
            [
                for i, dtype in List.indexed npyDTypes do
                    for j, shape in List.indexed [ [||]; [| 5 |]; [| 2; 3; 4 |]; [| 0; 3 |]; [| 1; 7; 1; 2 |] ] do
                        let a = makeArray dtype shape (100 * i + j)
                        let name = $"{dtype}_{j}"
                        TensorFile.Write(Path.Combine(dir, name + ".npy"), pairs [ name, a ])
                        line (name + ".npy") "-" a
                        yield name, a
            ]

        let arrays = arrays @ [ "naïve", makeArray DType.F32 [| 7 |] 999 ]
        Npz.Write(Path.Combine(dir, "all.npz"), pairs arrays)
        Npz.Write(Path.Combine(dir, "all_compressed.npz"), pairs arrays, true)

        for file in [ "all.npz"; "all_compressed.npz" ] do
            for name, a in arrays do
                line file name a

        File.WriteAllLines(Path.Combine(dir, "manifest.tsv"), manifest, UTF8Encoding false)
        let script = Path.Combine(dir, "read.py")
        File.WriteAllText(script, numpyReader)
        let code, output = run [ script; dir ]
        Assert.That(code, eq 0, "numpy disagrees:\n" + output))

/// numpy writes Fortran-ordered and big-endian arrays (np.save of a.T, np.asfortranarray, astype('>f4'), ...)
/// and, independently, the C-order little-endian bytes of the same values (the array
/// cast to the little-endian dtype in C order, a.astype(..., order='C')); the script also checks that each file really has the layout it claims.
let numpyForeignWriter =
    """
import os, sys
import numpy as np
from numpy.lib import format as fmt

out = sys.argv[1]
rng = np.random.default_rng(20260412)
manifest = []
arrays = {}

def values(code, shape):
    dt = np.dtype(code)
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == 'b':
        return (rng.integers(0, 2, size=n) == 1).reshape(shape)
    if dt.kind == 'f':
        a = rng.standard_normal(n).astype(dt)
        special = np.array([-0.0, np.inf, np.nan], dtype=dt)
        k = min(n, len(special))
        a[:k] = special[:k]
        return a.reshape(shape)
    return rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, size=n, dtype=dt, endpoint=True).reshape(shape)

def layout(path):
    with open(path, 'rb') as f:
        version = fmt.read_magic(f)
        header = fmt.read_array_header_1_0(f) if version == (1, 0) else fmt.read_array_header_2_0(f)
    return header[1], header[2].str

cases = []
for code in ['f2', 'f4', 'f8', 'i4', 'i8', 'u1', 'b1']:
    for shape in [(), (5,), (3, 4), (2, 3, 4), (0, 3)]:
        base = values('<' + code, shape)
        for order in ['T', 'F', 'C']:
            for endian in ['<', '>']:
                if order == 'C' and endian == '<':
                    continue
                a = base.astype(endian + code) if code not in ('u1', 'b1') else base.copy()
                if order == 'T':
                    a = a.T
                elif order == 'F':
                    a = np.asfortranarray(a)
                name = '%s%s_%s_%s' % (endian if endian == '>' else 'l', code, order, 'x'.join(str(d) for d in shape))
                cases.append((name, a, endian))

for name, a, endian in cases:
    file = name + '.npy'
    np.save(os.path.join(out, file), a)
    fortran, descr = layout(os.path.join(out, file))
    # The file must really be in the layout under test (numpy writes F order only for non-C-contiguous arrays).
    expect_fortran = a.flags.f_contiguous and not a.flags.c_contiguous
    assert fortran == expect_fortran, (file, fortran)
    if a.dtype.itemsize > 1:
        assert descr[0] == endian, (file, descr)
    arrays[name] = a
    expected = a.astype(a.dtype.newbyteorder('<'), order='C')
    manifest.append('\t'.join([file, '-', expected.dtype.str, ','.join(str(d) for d in expected.shape), expected.tobytes().hex(), str(fortran)]))
np.savez(os.path.join(out, 'foreign.npz'), **arrays)
np.savez_compressed(os.path.join(out, 'foreign_compressed.npz'), **arrays)
for file in ('foreign.npz', 'foreign_compressed.npz'):
    for name, a, endian in cases:
        expected = a.astype(a.dtype.newbyteorder('<'), order='C')
        manifest.append('\t'.join([file, name, expected.dtype.str, ','.join(str(d) for d in expected.shape), expected.tobytes().hex(), '-']))
with open(os.path.join(out, 'manifest.tsv'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(manifest) + '\n')
"""

let ``Fortran-ordered and big-endian files numpy writes are read as numpy's C-order values`` () =
    requireNumpy ()

    withTempDir (fun dir ->
        let script = Path.Combine(dir, "write.py")
        File.WriteAllText(script, numpyForeignWriter)
        let code, output = run [ script; dir ]
        Assert.That(code, eq 0, output)

        let lines =
            File.ReadAllLines(Path.Combine(dir, "manifest.tsv"), Encoding.UTF8) |> Array.filter ((<>) "")

        let npyLines = lines |> Array.filter (fun l -> l.Split('\t').[1] = "-")
        Assert.That(lines.Length, eq (3 * npyLines.Length), "manifest lines")
        // The cases include real Fortran-ordered files (not only rank <= 1 ones, where the orders coincide).
        Assert.That(npyLines |> Array.filter (fun l -> l.Split('\t').[5] = "True") |> Array.length, Is.GreaterThanOrEqualTo 50)

        let archives =
            Collections.Generic.Dictionary<string, Collections.Generic.IReadOnlyDictionary<string, NdArray>>()

        for l in lines do
            let f = l.Split '\t'
            let file, key, descr, shape, hex = f.[0], f.[1], f.[2], parseShape f.[3], Convert.FromHexString f.[4]

            let array =
                if key = "-" then
                    Seq.head (TensorFile.Read(Path.Combine(dir, file))).Values
                else
                    if not (archives.ContainsKey file) then
                        archives.[file] <- TensorFile.Read(Path.Combine(dir, file))

                    archives.[file].[key]

            let what = $"{file} {key}"
            Assert.That(array.DType, eq dtypeOfDescr.[descr], what)
            Assert.That(List.ofSeq array.Shape, eq shape, what)
            Assert.That(littleEndian array, eq hex, what))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "harness/tensors"
        "TensorFileTests"
        [
            Proofs.prop
                [ "tensorio.npy-roundtrip" ]
                "npy write then read is the identity on bit patterns"
                ``npy write then read is the identity on bit patterns``
            Proofs.prop
                [ "tensorio.npz-roundtrip" ]
                "npz write then read is the identity on names and bit patterns"
                ``npz write then read is the identity on names and bit patterns``
            Proofs.prop
                [ "tensorio.safetensors-roundtrip" ]
                "safetensors write then read is the identity on names and bit patterns"
                ``safetensors write then read is the identity on names and bit patterns``
            Proofs.test
                [ "tensorio.npy-roundtrip" ]
                "npy writer switches to version 2.0 when the header outgrows 65535 bytes"
                ``npy writer switches to version 2.0 when the header outgrows 65535 bytes``
            Proofs.test
                [ "tensorio.by-extension" ]
                "TensorFile reads and writes each format by extension"
                ``TensorFile reads and writes each format by extension``
            Proofs.test
                [ "tensorio.by-extension" ]
                "TensorFile rejects unknown extensions missing files and arrays a format cannot hold"
                ``TensorFile rejects unknown extensions missing files and arrays a format cannot hold``
            Proofs.test
                [ "tensorio.messages" ]
                "npy truncated data is rejected with the byte counts"
                ``npy truncated data is rejected with the byte counts``
            Proofs.test
                [ "tensorio.messages" ]
                "npy trailing bytes are rejected with the byte counts"
                ``npy trailing bytes are rejected with the byte counts``
            Proofs.test
                [ "tensorio.messages" ]
                "npy truncated header and preamble are rejected"
                ``npy truncated header and preamble are rejected``
            Proofs.test
                [ "tensorio.messages" ]
                "npy bad magic and unsupported versions are rejected"
                ``npy bad magic and unsupported versions are rejected``
            Proofs.cases
                [ "tensorio.messages" ]
                "npy malformed header dicts are rejected naming the fault"
                [
                    "\"{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }\", \"malformed header dict: unexpected ''' in a dict, expected ',' or '}'\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }",
                            "malformed header dict: unexpected ''' in a dict, expected ',' or '}'"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, }\", \"missing key 'shape'\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, }",
                            "missing key 'shape'"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\", \"unexpected key 'extra'\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
                            "unexpected key 'extra'"
                        ))
                    "\"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\", \"key 'descr' appears twice\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                            "key 'descr' appears twice"
                        ))
                    "\"[('descr', '<f4')]\", \"expected a dict\"",
                    (fun () -> ``npy malformed header dicts are rejected naming the fault`` ("[('descr', '<f4')]", "expected a dict"))
                    "\"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}\", \"'fortran_order' must be True or False, not 0\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
                            "'fortran_order' must be True or False, not 0"
                        ))
                    "\"{'descr': 4, 'fortran_order': False, 'shape': (2,)}\", \"'descr' must be a string, not 4\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': 4, 'fortran_order': False, 'shape': (2,)}",
                            "'descr' must be a string, not 4"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': 2}\", \"'shape' must be a tuple of integers, not 2\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': 2}",
                            "'shape' must be a tuple of integers, not 2"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}\", \"'2.5' is not an integer\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}",
                            "'2.5' is not an integer"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}\", \"'shape' must be a tuple of integers\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}",
                            "'shape' must be a tuple of integers"
                        ))
                    "\"{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}\", \"unexpected 'f' in a dict\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
                            "unexpected 'f' in a dict"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}\", \"unexpected name 'false'\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}",
                            "unexpected name 'false'"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk\", \"after the end of the literal\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk",
                            "after the end of the literal"
                        ))
                    "\"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}\", \"structured dtypes\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
                            "structured dtypes"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}\", \"integer 99999999999999999999 is too large\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                            "integer 99999999999999999999 is too large"
                        ))
                    "\"{'descr': '<f4', 'fortran_order': False, 'shape': (2,\", \"unexpected end of text\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` (
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,",
                            "unexpected end of text"
                        ))
                    "\"\", \"unexpected end of text, expected a value\"",
                    (fun () ->
                        ``npy malformed header dicts are rejected naming the fault`` ("", "unexpected end of text, expected a value"))
                ]
            Proofs.test
                [ "tensorio.messages" ]
                "npy deeply nested header is rejected without exhausting the stack"
                ``npy deeply nested header is rejected without exhausting the stack``
            Proofs.test
                [ "tensorio.messages" ]
                "npy header dicts in any key order and spelling are accepted"
                ``npy header dicts in any key order and spelling are accepted``
            Proofs.test
                [ "tensorio.messages" ]
                "npy negative and oversized dimensions are rejected"
                ``npy negative and oversized dimensions are rejected``
            Proofs.cases
                [ "tensorio.messages" ]
                "npy unknown dtypes are rejected naming the dtype"
                [
                    "\"<c16\"", (fun () -> ``npy unknown dtypes are rejected naming the dtype`` ("<c16"))
                    "\"<i2\"", (fun () -> ``npy unknown dtypes are rejected naming the dtype`` ("<i2"))
                    "\"|O\"", (fun () -> ``npy unknown dtypes are rejected naming the dtype`` ("|O"))
                    "\"<U8\"", (fun () -> ``npy unknown dtypes are rejected naming the dtype`` ("<U8"))
                    "\"<f16\"", (fun () -> ``npy unknown dtypes are rejected naming the dtype`` ("<f16"))
                    "\"\"", (fun () -> ``npy unknown dtypes are rejected naming the dtype`` (""))
                ]
            Proofs.test
                [ "tensorio.messages" ]
                "npy big-endian or Fortran-ordered headers with invalid parts are still rejected"
                ``npy big-endian or Fortran-ordered headers with invalid parts are still rejected``
            Proofs.test
                [ "tensorio.foreign-layouts" ]
                "npy big-endian and Fortran-ordered elements are converted to native C order"
                ``npy big-endian and Fortran-ordered elements are converted to native C order``
            Proofs.test
                [ "tensorio.messages" ]
                "npy bool bytes other than 0 and 1 are rejected at their index"
                ``npy bool bytes other than 0 and 1 are rejected at their index``
            Proofs.test [ "tensorio.messages" ] "npy version 3.0 header must be UTF-8" ``npy version 3.0 header must be UTF-8``
            Proofs.test
                [ "tensorio.bounded-allocation" ]
                "npy giant declared shape on a tiny file is rejected without allocating it"
                ``npy giant declared shape on a tiny file is rejected without allocating it``
            Proofs.test
                [ "tensorio.bounded-allocation" ]
                "npz entries claiming huge sizes are rejected without allocating them"
                ``npz entries claiming huge sizes are rejected without allocating them``
            Proofs.test [ "tensorio.messages" ] "npz that is not a zip is rejected" ``npz that is not a zip is rejected``
            Proofs.test
                [ "tensorio.messages" ]
                "npz entries that are not npy files or repeat a name are rejected"
                ``npz entries that are not npy files or repeat a name are rejected``
            Proofs.test
                [ "tensorio.messages" ]
                "npz malformed entries are rejected naming the array"
                ``npz malformed entries are rejected naming the array``
            Proofs.test [ "tensorio.messages" ] "npz writer rejects repeated names and bf16" ``npz writer rejects repeated names and bf16``
            Proofs.test
                [ "tensorio.messages" ]
                "safetensors with a bad header length or bad JSON is rejected"
                ``safetensors with a bad header length or bad JSON is rejected``
            Proofs.test
                [ "tensorio.messages" ]
                "safetensors entries with unknown dtypes or bad fields are rejected naming the array"
                ``safetensors entries with unknown dtypes or bad fields are rejected naming the array``
            Proofs.test
                [ "tensorio.messages" ]
                "safetensors offsets out of range or disagreeing with the shape are rejected"
                ``safetensors offsets out of range or disagreeing with the shape are rejected``
            Proofs.test
                [ "tensorio.messages" ]
                "safetensors overlapping gapped or incomplete buffers are rejected"
                ``safetensors overlapping gapped or incomplete buffers are rejected``
            Proofs.test
                [ "tensorio.messages" ]
                "safetensors accepts metadata zero-size arrays and any header order"
                ``safetensors accepts metadata zero-size arrays and any header order``
            Proofs.test
                [ "tensorio.bounded-allocation" ]
                "safetensors giant header length on a tiny file is rejected without allocating it"
                ``safetensors giant header length on a tiny file is rejected without allocating it``
            Proofs.prop
                [ "tensorio.rejects-malformed" ]
                "every strict prefix of a valid file is rejected"
                ``every strict prefix of a valid file is rejected``
            Proofs.prop
                [ "tensorio.rejects-malformed" ]
                "bytes appended to an npy or safetensors file are rejected"
                ``bytes appended to an npy or safetensors file are rejected``
            Proofs.prop
                [ "tensorio.rejects-malformed"; "tensorio.bounded-allocation" ]
                "damaged files are rejected with TensorFileException or read within bounded memory"
                ``damaged files are rejected with TensorFileException or read within bounded memory``
            Proofs.sequenced (
                Proofs.test
                    [ "tensorio.numpy-agreement" ]
                    "files numpy writes are read with identical dtypes shapes and bits"
                    ``files numpy writes are read with identical dtypes shapes and bits``
            )
            Proofs.sequenced (
                Proofs.test
                    [ "tensorio.numpy-agreement" ]
                    "files we write are loaded by numpy with identical dtypes shapes and bits"
                    ``files we write are loaded by numpy with identical dtypes shapes and bits``
            )
            Proofs.sequenced (
                Proofs.test
                    [ "tensorio.foreign-layouts" ]
                    "Fortran-ordered and big-endian files numpy writes are read as numpy's C-order values"
                    ``Fortran-ordered and big-endian files numpy writes are read as numpy's C-order values``
            )
        ]
