#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (the README's test
# command; CI runs exactly this, with CONTACCUM_WERROR=ON: warnings fail it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=ON "-DCONTACCUM_WERROR=${CONTACCUM_WERROR:-OFF}"
cd "${CONTACCUM_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 1500 -j "$(nproc)"
