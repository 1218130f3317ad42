#!/usr/bin/env bash
# The GPU check (docs/DEVICES.md), prepared to run once on a borrowed GPU
# machine in under 8 minutes: CUDA, PyTorch with LibTorch's CMake files in
# its wheel, NCCL, sentence-transformers; no network, no Debian packages.
#   1. builds the library, the tests and the strategy benchmark against the
#      wheel's LibTorch, with the other dependencies from device-deps.tar.xz
#      (scripts/device-deps.sh makes it on a Debian 12 machine; the device
#      tool carries it: carry ["device-deps.tar.xz"]);
#   2. runs every CUDA test and the precision tests (`--gtest_filter`);
#   3. benchmarks a BERT-base-shaped encoder (random weights, 768 wide, 12
#      layers) in bf16 on the GPU: ms per step, examples/s and peak GPU memory
#      of full batch, GradAccum, GradCache and ContAccum at total batches
#      128-4,096 (one process per configuration), and sentence-transformers'
#      CachedMultipleNegativesRankingLoss at the same sizes beside them.
# Everything it prints also goes to $OUT (the device tool's output folder)
# or build-device/, as device-check.log and device-check.jsonl.
# Usage: bash scripts/device-check.sh        (SKIP_BUILD=1: reuse the build)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${DEVICE_BUILD_DIR:-$root/build-device}
out=${OUT:-$build}
mkdir -p "$build" "$out"
log="$out/device-check.log" results="$out/device-check.jsonl"
: >"$results"
exec > >(tee -a "$log") 2>&1
started=$SECONDS
say() { echo "[device-check $((SECONDS - started))s] $*"; }

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || {
  say "no PyTorch here"
  exit 1
}
say "torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

# 1. Dependencies: the unpacked Debian 12 packages.
deps="$build/deps"
if [ ! -d "$deps/usr" ]; then
  [ -f "$root/device-deps.tar.xz" ] || {
    say "device-deps.tar.xz is missing: run scripts/device-deps.sh first and carry it"
    exit 1
  }
  mkdir -p "$deps" && tar -C "$deps" -xJf "$root/device-deps.tar.xz"
fi
multiarch="$deps/usr/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$multiarch:$multiarch/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The CUDA runtime's headers, for the benchmark's GPU memory figure: the
# toolkit's, or those of the wheel's nvidia-cuda-runtime package.
cuda_include=$(python3 -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "include"))' 2>/dev/null || true)
for dir in /usr/local/cuda/include "$cuda_include"; do
  [ -n "$dir" ] && [ -f "$dir/cuda_runtime_api.h" ] && export CPATH="$dir${CPATH:+:$CPATH}" && break
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "configuring against $torch_prefix"
  # The wheel's LibTorch is built with the C++11 ABI flag it records; CMake's
  # Torch config passes it on. CUDA's toolkit is found through the wheel's.
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr;$multiarch/cmake" \
    -DCONTACCUM_BUILD_TESTS=ON -DCONTACCUM_BUILD_BENCHMARKS=ON -DCONTACCUM_BUILD_EXAMPLES=OFF \
    -DCONTACCUM_INSTALL=OFF -DCONTACCUM_USE_CCACHE=OFF -DCONTACCUM_USE_PCH=OFF >"$build/configure.log" 2>&1 ||
    { tail -40 "$build/configure.log"; say "configure failed"; exit 1; }
  say "building (log in $build/build.log)"
  cmake --build "$build" --parallel "$(nproc)" --target contaccum_tests contaccum_bench_strategies \
    >"$build/build.log" 2>&1 || { grep -m 20 -B2 -A6 "error" "$build/build.log"; say "build failed"; exit 1; }
fi
tests="$build/tests/contaccum_tests"
bench=$(find "$build" -name contaccum_bench_strategies -type f | head -1)

# 2. The CUDA tests and the precision path.
say "tests"
timeout 180 "$tests" --gtest_brief=1 \
  --gtest_filter='*Cuda*:Device.*:DeviceFiles.*:BagOfEmbeddingsEncoder.*:*FusedAdamW*:Precision.*:AutocastGuard.*:LossScaler.*:ScaledTraining.*:Strategy.BanksAreRestoredOnTheModelsDevice' |
  tail -40
echo "{\"tests_exit_status\": ${PIPESTATUS[0]}}" >>"$results"

# 3. The benchmark: synthetic token batches (no data set on the machine).
say "benchmark"
batches="$build/bench-batches"
totals=${TOTALS:-128,512,1024,4096}
micro=${MICRO:-64}
[ -f "$batches/manifest.json" ] ||
  "$bench" prepare --data /nonexistent --out "$batches" --total-batch "$totals" --rounds 4 --vocab-size 30522 \
    --hard-negatives 0 >/dev/null
shape=(--encoder transformer --hidden 768 --layers 12 --heads 12 --intermediate 3072 --query-length 32
  --passage-length 128 --device cuda --precision bf16 --warmup 1 --steps 3)
for total in ${totals//,/ }; do
  for strategy in full_batch grad_accum grad_cache contaccum; do
    memory=0
    [ "$strategy" = contaccum ] && memory=$((8 * total))
    line=$(timeout 120 "$bench" rss --batches "$batches" "${shape[@]}" --strategy "$strategy" \
      --total-batch "$total" --micro-batch "$micro" --memory "$memory" 2>&1 | tail -1)
    case $line in
      "{"*) echo "$line" | tee -a "$results" ;;
      *) echo "{\"impl\": \"cpp\", \"strategy\": \"$strategy\", \"total_batch\": $total, \"error\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1][:300]))' "$line")}" | tee -a "$results" ;;
    esac
  done
done
say "sentence-transformers"
timeout 240 python3 "$root/scripts/device_check_st.py" --total-batch "$totals" --micro-batch "$micro" |
  tee -a "$results"
say "done: $results"
