#!/usr/bin/env bash
# Builds the native libraries (native/build/libreference_lemon.so) with CMake.
# Installs the Debian packages it needs (cmake, g++, liblemon-dev) when they are missing and this runs as root;
# otherwise prints the command that installs them and stops.
# Usage: native/build.sh [--clean]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$here/build"

if [[ "${1:-}" == "--clean" ]]; then
  rm -rf "$build"
fi

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
[[ -f /usr/include/lemon/network_simplex.h || -n "${LEMON_ROOT:-}" ]] || missing+=(liblemon-dev)

if (( ${#missing[@]} > 0 )); then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "native: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  else
    echo "native: missing ${missing[*]}. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --parallel 2
echo "native: built $(ls "$build"/libreference_lemon.* 2>/dev/null | head -1)"
