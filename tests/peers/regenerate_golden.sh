#!/usr/bin/env bash
# Rewrites data/golden/<algorithm>/*/expected.npz with the reference (from each case's input.npz and params.json)
# and rewrites the algorithm's MANIFEST (sha256sum format). Run after ./build.sh build.
# Usage: tests/peers/regenerate_golden.sh ALGORITHM
# The expected files must then be confirmed by the algorithm's independent peer under tests/peers/.
set -euo pipefail
cd "$(dirname "$0")/../.."
alg=${1:?usage: regenerate_golden.sh ALGORITHM}
dir=data/golden/$alg
cli=$(ls -t src/Reference.Cli/bin/*/net10.0/Reference.Cli.dll | head -1)
for case in "$dir"/*/; do
  args=(run "$alg" --input "$case/input.npz" --output "$case/expected.npz")
  [ -f "$case/params.json" ] && args+=(--params "$case/params.json")
  dotnet "$cli" "${args[@]}"
done
(cd "$dir" && find . -type f ! -name MANIFEST | sed 's|^\./||' | sort | xargs sha256sum > MANIFEST)
echo "wrote $dir/MANIFEST"
