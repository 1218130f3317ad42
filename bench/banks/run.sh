#!/usr/bin/env bash
# The banks at the speed of the matrix unit: builds contaccum_bench_banks
# (Release, build-bench/) and writes its JSON lines to
# bench/banks/results.jsonl; bench/performance/report.py puts them in
# docs/PERFORMANCE.md. Run it on an otherwise idle machine.
#
# Usage: bash bench/banks/run.sh [contaccum_bench_banks options]
#        (default: micro-batch 32, total batch 128, width 1,024 and banks of
#        1,024 / 4,096 / 8,192, the main job's shapes; see --help)
# Environment: OUT (default bench/banks/results.jsonl; report.py reads
# results-no-avx512.jsonl too, a second machine's run): where, relative to
# the repository. MEMORIES (default "1024 4096 8192"): one process per bank
# size, so that the larger banks' steps do not evict the smaller ones' from
# the cache between rounds (each process times GradAccum beside its size).
# ROUNDS (default 120): timed rounds per process; with 40, one run's 95%
# interval of ContAccum's excess beyond the floor spanned about 10 points of
# GradAccum's step on a 2-vCPU machine, too wide to tell 2% from 5%.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bash "$root/bench/build.sh" contaccum_bench_banks
out="$root/${OUT:-bench/banks/results.jsonl}"
# The code the run measured: its commit, and whether the tree differed from it.
dirty=$(git -C "$root" status --porcelain --untracked-files=no | grep -q . && echo true || echo false)
echo "{\"kind\": \"source\", \"commit\": \"$(git -C "$root" rev-parse --short HEAD)\", \"modified\": $dirty}" >"$out.tmp"
for m in ${MEMORIES:-1024 4096 8192}; do
  "$root/build-bench/bench/banks/contaccum_bench_banks" --memory "$m" --rounds "${ROUNDS:-120}" "$@" | tee -a "$out.tmp"
done
mv "$out.tmp" "$out"
