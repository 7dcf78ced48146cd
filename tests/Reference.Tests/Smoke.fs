module Reference.Tests.Smoke

open NUnit.Framework
open FsCheck.FSharp
open FsCheck.NUnit

[<Test>]
let ``nunit runs`` () = Assert.That(1 + 1, Is.EqualTo 2)

[<Property>]
let ``fscheck runs`` (x: int) = x + 0 = x
