#!/usr/bin/env bash
# The banks' whole steps before and after a library change, side by side:
# builds contaccum_bench_banks of revision BEFORE_REV (its sources and
# library as they were) and of the working tree, then alternates the two
# binaries PAIRS times on the same step measurement (GradAccum and ContAccum
# at each bank size, interleaved within each run). Prints ms a step per run.
#
# Usage: bash bench/banks/before_after.sh BEFORE_REV [PAIRS (default 3)] [BANK_SIZES (default 1024,8192)]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rev=$1
pairs=${2:-3}
memory=${3:-1024,8192}
work="$root/build-bench/before-after"
rm -rf "$work"
mkdir -p "$work/src"
git -C "$root" archive "$rev" | tar -x -C "$work/src"
bash "$root/bench/build.sh" contaccum_bench_banks "$work/src" "$work/build"
bash "$root/bench/build.sh" contaccum_bench_banks
before="$work/build/bench/banks/contaccum_bench_banks"
after="$root/build-bench/bench/banks/contaccum_bench_banks"
steps() {
  "$1" --memory "$memory" --rounds 30 2>/dev/null | python3 -c '
import json, sys
print(" | ".join(f"{d[\"strategy\"]} {d[\"memory_size\"]}: {d[\"ms_per_step\"]:.1f} ms"
                 for d in map(json.loads, sys.stdin) if d["kind"] == "steps"))'
}
for ((i = 1; i <= pairs; i++)); do
  echo "before ($rev): $(steps "$before")"
  echo "after (working tree): $(steps "$after")"
done
