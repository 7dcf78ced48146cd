#!/usr/bin/env bash
# Bootstraps, builds and tests the project on a fresh machine of this kind (Debian, .NET SDK 10, g++, CMake).
#
#   ./build.sh build              restore tools and packages, install missing Debian packages (as root), build everything
#   ./build.sh test               build, check the house style, then run the whole suite; ends with "N passed, N failed, N skipped"
#   ./build.sh format             apply the house style (.editorconfig): dotnet format (C#), Fantomas (F#)
#   ./build.sh selfcheck [ARGS]   build, then run `reference selfcheck ARGS` (the main job)
#   ./build.sh reference ARGS     build, then run the `reference` command with ARGS
#
# With CI=true, a missing peer (Debian package) or native library fails the run; locally it is a visible skip.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
CONFIG=${CONFIG:-Release}
CLI_DLL="$ROOT/src/Reference.Cli/bin/$CONFIG/net10.0/Reference.Cli.dll"

# Debian packages the peers, the Python client's tests (pytest, pip, setuptools) and the native shim need.
# Python peers run under /usr/bin/python3 (Debian's),
# not the python3 first on PATH.
DEBIAN_PACKAGES=(python3-numpy python3-pot python3-torch python3-scipy python3-networkx python3-pytest python3-pip python3-setuptools liblemon-dev cmake g++)

log() { printf '==> %s\n' "$*" >&2; }

ensure_debian_packages() {
  local missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing Debian packages: ${missing[*]}"
    log "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    if [ "${CI:-}" = "true" ]; then exit 1; fi
  fi
}

build_native() {
  if [ -x native/build.sh ]; then
    log "building native/"
    bash native/build.sh
  fi
}

build() {
  ensure_debian_packages
  log "restoring tools and packages"
  dotnet tool restore >/dev/null
  dotnet paket restore >/dev/null
  build_native
  log "building ($CONFIG)"
  dotnet build Reference.sln -c "$CONFIG" -nologo -v quiet -clp:NoSummary -p:TreatWarningsAsErrors=true
}

# The house style (.editorconfig), checked: C# by dotnet format, F# by Fantomas (a local tool).
check_style() {
  log "checking the house style (dotnet format, fantomas)"
  local status=0
  dotnet format Reference.sln --verify-no-changes --no-restore -v quiet >&2 || {
    log "C# differs from the house style: run ./build.sh format"; status=1; }
  dotnet fantomas --check tests >&2 || {
    log "F# differs from the house style: run ./build.sh format"; status=1; }
  return $status
}

format() {
  dotnet tool restore >/dev/null
  dotnet format Reference.sln --no-restore -v quiet
  dotnet fantomas tests
}

run_tests() {
  local results="$ROOT/.test-results"
  rm -rf "$results"
  mkdir -p "$results"
  local status=0
  # The C# API tests stay on NUnit (what C# users know); `dotnet test` runs them through the NUnit adapter.
  log "running the C# API tests (NUnit)"
  dotnet test tests/Reference.CSharpTests -c "$CONFIG" --no-build -nologo \
    --logger "trx;LogFileName=csharp.trx" --logger "console;verbosity=minimal" --results-directory "$results" || status=$?
  # The F# suite is an Expecto program (no Expecto adapter is served): it runs every test and writes a JUnit summary.
  log "running the F# suite (Expecto)"
  dotnet run --project tests/Reference.Tests -c "$CONFIG" --no-build -- \
    --junit-summary "$results/reference-tests.junit.xml" --colours 0 --no-spinner || status=$?
  # Sum the counters of the C# TRX file and the F# JUnit file.
  /usr/bin/python3 - "$results" <<'PY' || status=1
import glob, os, sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
total = passed = failed = skipped = 0
trx = glob.glob(sys.argv[1] + "/*.trx")
for f in trx:
    c = ET.parse(f).getroot().find("t:ResultSummary/t:Counters", ns).attrib
    total += int(c["total"]); passed += int(c["passed"]); failed += int(c["failed"])
    skipped += int(c["total"]) - int(c["passed"]) - int(c["failed"])  # ignored, inconclusive, not executed
junit = glob.glob(sys.argv[1] + "/*.junit.xml")
for f in junit:
    for case in ET.parse(f).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None: failed += 1
        elif case.find("skipped") is not None: skipped += 1
        else: passed += 1
zoo = os.path.join(sys.argv[1], "zoo-summary.txt")
if os.path.exists(zoo):
    print(open(zoo).read().rstrip())
print(f"Test projects: {len(trx) + len(junit)}; tests run: {total}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(0 if failed == 0 and total > 0 and len(trx) >= 1 and len(junit) >= 1 else 1)
PY
  return $status
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
  build) build ;;
  test)
    build
    style=0; check_style || style=1
    run_tests || exit 1
    exit $style ;;
  format) format ;;
  selfcheck) build; dotnet "$CLI_DLL" selfcheck "$@" ;;
  reference) build >&2; dotnet "$CLI_DLL" "$@" ;;
  *) echo "usage: ./build.sh build|test|format|selfcheck [args]|reference ARGS" >&2; exit 2 ;;
esac
