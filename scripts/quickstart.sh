#!/usr/bin/env bash
# Installs what is missing, builds, and runs the quickstart example (the
# README's main-job command).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF
"$root/build/examples/quickstart/contaccum_quickstart" "$@"
