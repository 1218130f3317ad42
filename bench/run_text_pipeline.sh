#!/usr/bin/env bash
# Builds and runs the text-pipeline throughput benchmark.
# Usage: bench/run_text_pipeline.sh [DATA_DIR] [--repeats N]   (default data: ../shared/data/debpkg)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_BENCHMARKS=ON >/dev/null
cd "$root"
exec "$root/build/bench/text_pipeline/contaccum_bench_text_pipeline" "$@"
