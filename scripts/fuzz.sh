#!/usr/bin/env bash
# Builds contaccum's libFuzzer targets (clang, ASan + UBSan) in build-fuzz/
# and runs each for SECONDS seconds; see fuzz/README.md.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 60 s, every target)
# Env:   FUZZ_JOBS   targets fuzzed at once (default: number of cores, at most 4)
#        FUZZ_RSS_MB libFuzzer's -rss_limit_mb (default 3072)
# Exits non-zero when a target crashes, leaks, hangs or runs out of memory
# (naming the target and the artifact), or when a file in
# fuzz/regressions/<target>/ makes its target fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }

all_targets=(beir_corpus beir_queries qrels hard_negatives dpr tsv_tuples train_config safetensors vocabulary checkpoint)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

bash "$root/scripts/install-deps.sh" clang libclang-rt-14-dev

build="$root/build-fuzz"
work="$build/work"
source "$root/scripts/ccache-env.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" \
  -DCONTACCUM_BUILD_TESTS=OFF -DCONTACCUM_BUILD_TOOLS=OFF -DCONTACCUM_BUILD_EXAMPLES=OFF \
  -DCONTACCUM_BUILD_BENCHMARKS=OFF -DCONTACCUM_INSTALL=OFF -DCONTACCUM_USE_CCACHE=ON \
  -DCONTACCUM_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" --parallel 2 --target $(printf '%s_fuzzer ' "${targets[@]}")

# LibTorch is not instrumented; see fuzz/lsan.supp for the leaks it is
# allowed to have. UBSan findings abort (-fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0:detect_odr_violation=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The per-process input files the path-taking readers read.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export CONTACCUM_FUZZ_TMPDIR=${CONTACCUM_FUZZ_TMPDIR:-/dev/shm}; fi
export OMP_NUM_THREADS=1

failed=()

# LibTorch has no frame pointers: the checkpoint target needs full malloc
# stacks for fuzz/lsan.supp to match LibTorch's leaks (slower, ~5x).
asan_for() { if [ "$1" = checkpoint ]; then echo "$ASAN_OPTIONS:fast_unwind_on_malloc=0"; else echo "$ASAN_OPTIONS"; fi; }

# 1. Regression inputs: each runs once through its target.
for t in "${targets[@]}"; do
  dir="$root/fuzz/regressions/$t"
  [ -d "$dir" ] || continue
  mapfile -t files < <(find "$dir" -type f ! -name '*.md' | sort)
  [ ${#files[@]} -gt 0 ] || continue
  log="$work/logs/$t.regressions.log"
  mkdir -p "$work/logs"
  if ASAN_OPTIONS=$(asan_for "$t") "$build/fuzz/${t}_fuzzer" -timeout=10 -rss_limit_mb="${FUZZ_RSS_MB:-3072}" "${files[@]}" >"$log" 2>&1; then
    echo "regressions $t: ${#files[@]} input(s) pass"
  else
    echo "regressions $t: FAILED (see $log)" >&2
    grep -E "^==[0-9]+==ERROR|SUMMARY|Running:" "$log" | tail -5 >&2 || true
    failed+=("$t (regression input in fuzz/regressions/$t)")
  fi
done

# 2. Fuzzing, from a writable copy of the seeds.
fuzz_one() {
  local t=$1
  local corpus="$work/corpus/$t" artifacts="$work/artifacts/$t" log="$work/logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$work/logs"
  rm -f "$artifacts"/*
  if [ -d "$root/fuzz/corpus/$t" ]; then cp -f "$root/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true; fi
  if [ "$t" = checkpoint ] && [ -z "$(ls -A "$corpus")" ]; then
    CONTACCUM_FUZZ_WRITE_CHECKPOINT="$corpus/generated.pt" "$build/fuzz/checkpoint_fuzzer" >/dev/null 2>&1 || true
  fi
  local rc=0
  ASAN_OPTIONS=$(asan_for "$t") "$build/fuzz/${t}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb="${FUZZ_RSS_MB:-3072}" \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  echo "$rc" >"$log.rc"
}

jobs_max=${FUZZ_JOBS:-$(getconf _NPROCESSORS_ONLN)}
[ "$jobs_max" -gt 4 ] && jobs_max=4
echo "fuzzing ${#targets[@]} target(s), ${seconds}s each, $jobs_max at a time; logs in $work/logs"
running=0
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs_max" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

printf '%-16s %6s %12s %10s %8s  %s\n' target rc executed exec/s corpus result
for t in "${targets[@]}"; do
  log="$work/logs/$t.log"
  rc=$(cat "$log.rc" 2>/dev/null || echo "?")
  execs=$(awk '/^stat::number_of_executed_units:/ {n = $2} END {print n}' "$log" 2>/dev/null || true)
  speed=$(awk '/^stat::average_exec_per_sec:/ {n = $2} END {print n}' "$log" 2>/dev/null || true)
  ncorpus=$(find "$work/corpus/$t" -type f | wc -l)
  mapfile -t found < <(find "$work/artifacts/$t" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | sort)
  result=ok
  if [ "$rc" != 0 ] || [ ${#found[@]} -gt 0 ]; then
    result="FAILED: ${found[*]:-no artifact, see $log}"
    failed+=("$t: ${found[*]:-rc $rc, see $log}")
  fi
  printf '%-16s %6s %12s %10s %8s  %s\n' "$t" "$rc" "${execs:-?}" "${speed:-?}" "$ncorpus" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo >&2
  for f in "${failed[@]}"; do echo "fuzz: finding in $f" >&2; done
  exit 1
fi
echo "fuzz: no findings"
