#!/usr/bin/env bash
# The banks' whole steps before and after a library change, side by side:
# builds contaccum_bench_banks of revision BEFORE_REV (its sources and
# library as they were) and of the working tree, then alternates the two
# binaries PAIRS times on the same step measurement (GradAccum and ContAccum
# at each bank size, interleaved within each run). Prints ms a step per run,
# and the short products' rates (scores, gradient) alone and inside the loss
# (warm / cold / paused / read / vector: docs/PERFORMANCE.md) at each bank size.
#
# Usage: bash bench/banks/before_after.sh BEFORE_REV [PAIRS (default 3)] [BANK_SIZES (default 1024,8192)]
# Environment: NO_STEPS set to any non-empty value times only the products
# and the loss (no whole steps), a kernel change's own A/B in a few minutes
# a pair.
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
summary=$(cat <<'PY'
import json, sys
lines = [json.loads(l) for l in sys.stdin]
def rate(d, key):  # "-" where the build predates the field
    return f"{d[key]:.0f}" if key in d else "-"
parts = [f"{d['strategy']} {d['memory_size']} {d.get('products', '')}: {d['ms_per_step']:.1f} ms"
         for d in lines if d["kind"] == "steps"]
parts += [f"short {d['memory_size']}: {d['short_gflops_scores']:.0f}/{d['short_gflops_gradient']:.0f} GFLOP/s"
          f" (in the loss, warm / cold / paused / read / vector: {rate(d, 'short_gflops_in_loss')}"
          f" / {rate(d, 'short_gflops_in_loss_cold')} / {rate(d, 'short_gflops_in_loss_paused')}"
          f" / {rate(d, 'short_gflops_in_loss_paused_then_read')} / {rate(d, 'short_gflops_in_loss_cold_then_vector')})"
          for d in lines if d["kind"] == "bank_work"]
print(" | ".join(parts))
PY
)
steps() {
  "$1" --memory "$memory" --rounds 30 ${NO_STEPS:+--no-steps} 2>/dev/null | python3 -c "$summary"
}
for ((i = 1; i <= pairs; i++)); do
  echo "before ($rev): $(steps "$before")"
  echo "after (working tree): $(steps "$after")"
done
