/// NUnit from F#: overloads fixed once, so that arrays compare structurally and lambdas convert.
[<AutoOpen>]
module Reference.Tests.Assertions

open System
open NUnit.Framework

/// NUnit's EqualTo with the overload fixed (structural equality for arrays and lists).
let eq (expected: 'T) = Is.EqualTo(box expected)

/// NUnit's Throws with an F# function (exactly this exception type, not a subclass).
let throws<'E when 'E :> exn> (f: unit -> unit) : 'E = Assert.Throws<'E>(Action f)
