#!/usr/bin/env bash
# Configures and builds contaccum in build/ (Release, Ninja, ccache, PCH), or
# in $CONTACCUM_BUILD_DIR when set (scripts/test-distribution.sh sets it).
# Usage: scripts/build.sh [extra cmake args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install-deps.sh"
source "$root/scripts/ccache-env.sh"
build=${CONTACCUM_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" --parallel "$(nproc)"
