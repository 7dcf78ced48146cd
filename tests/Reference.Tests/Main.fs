/// Runs the suite: every [<Tests>] value of this assembly, with Expecto's command-line arguments passed through
/// (e.g. --filter "routing/topk", --sequenced, --junit-summary FILE, --list-tests). Exit 0 when every test passes.
/// The paths that live in their own assemblies (torch, gpu) are registered first, as the `reference` command does.
module Reference.Tests.Main

open Expecto

[<EntryPoint>]
let main argv =
    Reference.Torch.TorchPaths.Register()
    Reference.Gpu.GpuPaths.Register()
    Tests.runTestsInAssemblyWithCLIArgs [] argv
