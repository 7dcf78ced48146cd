/// Paths inside the repository, found from the test assembly's location.
module Reference.Tests.Repo

open System.IO

/// The repository root: the nearest ancestor of the test binaries that holds Reference.sln.
let root =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then
            failwith "Reference.sln not found above the test assembly"
        elif File.Exists(Path.Combine(dir.FullName, "Reference.sln")) then
            dir.FullName
        else
            up dir.Parent

    up (DirectoryInfo System.AppContext.BaseDirectory)

/// A path relative to the repository root.
let path (parts: string list) = Path.Combine(root :: parts |> Array.ofList)
