/// Runs the suite: every [<Tests>] value of this assembly, with Expecto's command-line arguments passed through
/// (e.g. --filter "routing/topk", --sequenced, --junit-summary FILE, --list-tests). Exit 0 when every test passes.
module Reference.Tests.Main

open Expecto

[<EntryPoint>]
let main argv = Tests.runTestsInAssemblyWithCLIArgs [] argv
