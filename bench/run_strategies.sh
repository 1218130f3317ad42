#!/usr/bin/env bash
# Runs the strategy benchmark suite and writes docs/BENCHMARKS.md and
# bench/results.jsonl (one JSON object per measurement).
#
# Usage: bash bench/run_strategies.sh [DATA_DIR]
#        (default: ../shared/data/debpkg beside the repository; without it a
#        synthetic data set stands in)
# Environment: THREADS (intra-op threads of both implementations, default 1:
# on the 2-vCPU machine these numbers come from, 2 threads made every step
# 1.2-3x slower and 10x noisier than 1; see docs/BENCHMARKS.md), STEPS (timed
# steps per configuration, default 5; TRANSFORMER_STEPS for the transformer,
# default 7), WARMUP (default 1).
#
# Builds only the benchmark (Release) in build-bench/. Phases:
#   1. prepare: sample and tokenize the training batches once;
#   2. time, C++: every configuration of a total batch interleaved in one
#      process (bag of embeddings, then the transformer);
#   3. time, Python reference (python3-torch), the same way, per total batch
#      right after the C++ run of that total batch;
#   4. peak memory: each configuration alone in its own process;
#   5. before/after: the bank score cache (BEFORE_REV, default 0db4b2c, the
#      library before it) against this tree, alternating the two binaries;
#   6. report: bench/strategies/report.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
work="$build/strategies-work"
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
threads=${THREADS:-1}
# The same thread count for LibTorch's OpenMP pool and OpenBLAS's own, in C++
# and in Python.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
steps=${STEPS:-5}
# The transformer's steps are long and few; more of them steady its medians.
transformer_steps=${TRANSFORMER_STEPS:-7}
warmup=${WARMUP:-1}

bash "$root/bench/build.sh" contaccum_bench_strategies "$root" "$build"
bench="$build/bench/strategies/contaccum_bench_strategies"
python=/usr/bin/python3  # Debian's, with python3-torch
reference="$root/bench/strategies/reference.py"

rm -rf "$work"
mkdir -p "$work"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# The grid (see docs/BENCHMARKS.md for why the transformer's is narrower).
totals="64 128 256 512"
boe=(--encoder boe --dim 256 --embedding-dim 256 --query-length 32 --passage-length 128)
transformer=(--encoder transformer --layers 2 --hidden 128 --heads 4 --intermediate 512 --query-length 32
  --passage-length 64)
common=(--threads "$threads" --steps "$steps" --warmup "$warmup")
tcommon=(--threads "$threads" --steps "$transformer_steps" --warmup "$warmup")
all_strategies=full_batch,grad_accum,grad_cache,contaccum,contaccum_grad_cache

log "prepare: batches from $data"
"$bench" prepare --data "$data" --out "$work/batches" --total-batch "${totals// /,}" --rounds $((warmup + (steps > transformer_steps ? steps : transformer_steps))) \
  --query-length 32 --passage-length 128 2>"$work/prepare.log"

for t in $totals; do
  log "time: bag of embeddings, total_batch $t (C++, then Python)"
  "$bench" time --batches "$work/batches" "${boe[@]}" "${common[@]}" --total-batch "$t" --micro-batch 8,32 \
    --memory 0,1,8 --strategies "$all_strategies" >>"$work/time-cpp.jsonl"
  "$python" "$reference" --batches "$work/batches" "${boe[@]}" "${common[@]}" --total-batch "$t" --micro-batch 8 \
    --memory 1,8 --strategies "$all_strategies" >>"$work/time-python.jsonl"
done
for t in $totals; do
  log "time: transformer, total_batch $t (C++)"
  # Memory 0 of ContAccum is GradAccum (the spec's equality, tested), so the
  # transformer's grid measures it once, as grad_accum / grad_cache.
  "$bench" time --batches "$work/batches" "${transformer[@]}" "${tcommon[@]}" --total-batch "$t" --micro-batch 8 \
    --memory 1,8 --strategies "$all_strategies" >>"$work/time-cpp.jsonl"
  if [ "$t" -le 128 ]; then
    log "time: transformer, total_batch $t (Python)"
    "$python" "$reference" --batches "$work/batches" "${transformer[@]}" "${tcommon[@]}" --total-batch "$t" \
      --micro-batch 8 --memory 8 --strategies "$all_strategies" >>"$work/time-python.jsonl"
  fi
done

log "peak memory: one process per configuration"
for encoder in boe transformer; do
  if [ "$encoder" = boe ]; then shape=("${boe[@]}"); else shape=("${transformer[@]}"); fi
  for t in $totals; do
    configs=("full_batch $t 0" "grad_accum 8 0" "grad_cache 8 0" "contaccum 8 $t" "contaccum 8 $((8 * t))"
      "contaccum_grad_cache 8 $((8 * t))")
    for c in "${configs[@]}"; do
      read -r strategy micro memory <<<"$c"
      "$bench" rss --batches "$work/batches" "${shape[@]}" --threads "$threads" --warmup 1 --steps 1 \
        --strategy "$strategy" --total-batch "$t" --micro-batch "$micro" --memory "$memory" >>"$work/rss.jsonl"
    done
  done
done

before_rev=${BEFORE_REV:-0db4b2c}
if git -C "$root" rev-parse -q --verify "$before_rev^{commit}" >/dev/null; then
  log "before/after: the library at $before_rev vs the working tree (builds $before_rev first)"
  "$root/bench/strategies/before_after.sh" "$build" "$work" "$before_rev" 2 -- "${boe[@]}" "${common[@]}" \
    --total-batch 128,512 --micro-batch 8 --memory 8 --strategies grad_accum,contaccum
  "$root/bench/strategies/before_after.sh" "$build" "$work" "$before_rev" 2 -- "${transformer[@]}" "${tcommon[@]}" \
    --total-batch 128 --micro-batch 8 --memory 8 --strategies grad_accum,contaccum
else
  log "before/after skipped: revision $before_rev not in this clone"
fi

log "report"
command="bash bench/run_strategies.sh${*:+ $*}"
"$python" "$root/bench/strategies/report.py" --work "$work" --command "$command" \
  --results "$root/bench/results.jsonl" --markdown "$root/docs/BENCHMARKS.md"
log "wrote docs/BENCHMARKS.md and bench/results.jsonl"
