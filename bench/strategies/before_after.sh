#!/usr/bin/env bash
# Before/after of a library change, measured side by side: builds the
# benchmark against the library of revision BEFORE_REV (bench sources of the
# working tree, library of that revision) and alternates the two binaries on
# the same configurations. Called by bench/run_strategies.sh.
#
# Usage: bench/strategies/before_after.sh BUILD_DIR WORK_DIR BEFORE_REV REPEATS -- TIME_ARGS...
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$1 work=$2 rev=$3 repeats=$4
shift 5
src="$build/before-src"
rm -rf "$src"
mkdir -p "$src"
git -C "$root" archive "$rev" | tar -x -C "$src"
rm -rf "$src/bench/strategies"
cp -r "$root/bench/strategies" "$src/bench/strategies"
grep -q 'add_subdirectory(strategies)' "$src/bench/CMakeLists.txt" || echo 'add_subdirectory(strategies)' >>"$src/bench/CMakeLists.txt"
bash "$root/bench/build.sh" contaccum_bench_strategies "$src" "$build/before-build"
before="$build/before-build/bench/strategies/contaccum_bench_strategies"
after="$build/bench/strategies/contaccum_bench_strategies"
for ((i = 0; i < repeats; i++)); do
  for which in before after; do
    binary=$before
    [ "$which" = after ] && binary=$after
    "$binary" time --batches "$work/batches" "$@" |
      sed "s/^{/{\"build\":\"$which\",\"revision\":\"$( [ "$which" = after ] && git -C "$root" rev-parse --short HEAD || echo "$rev")\",\"repeat\":$i,/" \
        >>"$work/before-after.jsonl"
  done
done
