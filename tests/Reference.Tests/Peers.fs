/// Running the Python peers under tests/peers/ with Debian's /usr/bin/python3.
/// In CI (CI=true) a missing interpreter or package fails the test; locally it is a visible skip with the install command.
module Reference.Tests.Peers

open System
open System.Diagnostics
open System.IO
open NUnit.Framework

let python = "/usr/bin/python3"

let private inCi () = String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

/// Runs a process and returns its exit code, stdout and stderr.
let runProcess (file: string) (args: string list) =
    let psi =
        ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)

    for a in args do
        psi.ArgumentList.Add a

    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result, err.Result

/// Skips (locally) or fails (in CI) unless the Debian Python has the given modules.
let requireModules (modules: string list) (debianPackages: string) =
    let missing () =
        if not (File.Exists python) then
            true
        else
            let code, _, _ = runProcess python [ "-c"; "import " + String.Join(", ", modules) ]
            code <> 0

    if missing () then
        let why = $"{python} lacks {modules}; install with: apt-get install -y {debianPackages}"

        if inCi () then
            Assert.Fail why
        else
            Expecto.Tests.skiptest why

/// Runs a peer script from tests/peers and asserts it exits 0, showing its output on failure.
let runPeer (script: string) (args: string list) =
    let code, out, err = runProcess python (Repo.path [ "tests"; "peers"; script ] :: args)
    Assert.That(code, Is.EqualTo 0, $"{script} {String.Join(' ', args)} exited {code}\n{out}\n{err}")
    out
