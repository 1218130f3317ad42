#!/usr/bin/env bash
# Builds one benchmark target (Release, Ninja) in its own build directory, so
# that it neither waits for nor disturbs a build in build/. Installs the
# packages first.
# Usage: bash bench/build.sh TARGET [SOURCE_DIR [BUILD_DIR]]
#        (defaults: this repository, build-bench/ in it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=$1
src=${2:-$root}
build=${3:-$root/build-bench}
bash "$root/scripts/install-deps.sh"
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCONTACCUM_BUILD_BENCHMARKS=ON \
  -DCONTACCUM_BUILD_TESTS=OFF -DCONTACCUM_BUILD_EXAMPLES=OFF -DCONTACCUM_INSTALL=OFF >/dev/null
cmake --build "$build" --target "$target" >/dev/null
