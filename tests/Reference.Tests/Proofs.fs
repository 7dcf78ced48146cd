/// Links property tests to the theorems in proofs/ that they check.
/// Every [<Property>] test carries [<Theorem "family.id">]; every theorem in proofs/*.md lists its tests in a
/// line that starts with "**Tests:**". ProofsLinkage.fs checks both directions.
module Reference.Tests.Proofs

open System
open FsCheck.NUnit

/// Names the theorem (by its id in proofs/, e.g. "topk.kernel-equals-reference") that a test checks.
[<AttributeUsage(AttributeTargets.Method, AllowMultiple = true)>]
type TheoremAttribute(id: string) =
    inherit Attribute()
    member _.Id = id

/// The seed a property run uses: FSCHECK_REPLAY if set (e.g. "(12345,67890)"), a fixed one in CI,
/// a fresh one otherwise. FsCheck prints the seed of a failing run, so a local failure can be replayed.
let replay =
    match Environment.GetEnvironmentVariable "FSCHECK_REPLAY" with
    | null | "" ->
        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)
        then "(20261122,1)"
        else null
    | s -> s

/// A property with the project's settings: at least 200 cases, the replay seed above.
type PropAttribute() as this =
    inherit PropertyAttribute()
    do
        this.MaxTest <- 200
        this.QuietOnSuccess <- true
        if not (isNull replay) then this.Replay <- replay
