#!/usr/bin/env bash
# The main job's training steps, side by side: the same `contaccum train`
# (examples/main_job/config.yaml, MAX_STEPS steps, no dev evaluation) with
# each allocator and optimizer setting, REPEATS times interleaved, on the
# shared debpkg split (or the main job's own data). Writes one JSON object
# per run to bench/performance/main_job.jsonl; bench/performance/report.py
# turns them into docs/PERFORMANCE.md.
#
# Usage: bash bench/performance/main_job.sh [DATA_DIR]
# Environment: MAX_STEPS (default 40), REPEATS (default 2), BEFORE_BIN (a
# `contaccum` binary of an earlier revision to time as "before", optional;
# BEFORE_CONFIG, that revision's examples/main_job/config.yaml, default this
# one's; BEFORE_COMMIT, the revision's name, recorded for the report),
# VARIANTS (names from the list below separated by ';', default all), OUT
# (the file written; report.py also reads bench/performance/allocations.jsonl,
# written with VARIANTS="default, allocations counted;torch AdamW, allocations
# counted" OUT=bench/performance/allocations.jsonl, for its allocation table).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
steps=${MAX_STEPS:-40}
repeats=${REPEATS:-2}
cli="$root/build/tools/contaccum"
out=${OUT:-$root/bench/performance/main_job.jsonl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# jemalloc and tcmalloc are measured beside glibc (preloaded, not linked).
bash "$root/scripts/install-deps.sh" libjemalloc2 libtcmalloc-minimal4
[ -x "$cli" ] || bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF >/dev/null

jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
# name | environment | extra train arguments | binary
variants=(
  "default||"
  "glibc defaults|CONTACCUM_ALLOCATOR=system|"
  "torch AdamW||--set fused_adamw=false"
  "glibc defaults, torch AdamW|CONTACCUM_ALLOCATOR=system|--set fused_adamw=false"
  "row-sparse embeddings||--set row_sparse_embeddings=true"
  "default, allocations counted||--set count_allocations=true"
  "torch AdamW, allocations counted||--set fused_adamw=false --set count_allocations=true"
)
[ -f "$jemalloc" ] && variants+=("jemalloc|LD_PRELOAD=$jemalloc|")
[ -f "$tcmalloc" ] && variants+=("tcmalloc|LD_PRELOAD=$tcmalloc|")
[ -n "${BEFORE_BIN:-}" ] && variants+=("before||" "before, glibc kept|MALLOC_MMAP_THRESHOLD_=2147483647 MALLOC_TRIM_THRESHOLD_=2147483647|")

: >"$out.tmp"
# The machine's memory bandwidth, for the arithmetic of the optimizer's floor:
# a 256 MB float32 array updated in place (read + write), best of 5.
/usr/bin/python3 - >>"$out.tmp" <<'PY'
import json, time
import numpy as np
a = np.ones(64 << 20, dtype=np.float32)
best = min((lambda t: (np.multiply(a, np.float32(1.0000001), out=a), time.perf_counter() - t)[1])(time.perf_counter())
           for _ in range(5))
print(json.dumps({"probe": "memory", "read_write_gb_per_s": 2 * a.nbytes / best / 1e9}))
PY
/usr/bin/python3 "$root/bench/performance/report.py" --machine >>"$out.tmp"
if [ -n "${BEFORE_BIN:-}" ]; then
  /usr/bin/python3 -c 'import json, sys; print(json.dumps({"probe": "before", "commit": sys.argv[1]}))' \
    "${BEFORE_COMMIT:-not recorded}" >>"$out.tmp"
fi
for ((r = 0; r < repeats; r++)); do
  for v in "${variants[@]}"; do
    IFS='|' read -r name env extra <<<"$v"
    if [ -n "${VARIANTS:-}" ] && [[ ";$VARIANTS;" != *";$name;"* ]]; then continue; fi
    binary=$cli config=$root/examples/main_job/config.yaml
    [[ "$name" == before* ]] && binary=$BEFORE_BIN config=${BEFORE_CONFIG:-$config}
    run="$work/run"
    rm -rf "$run"
    # shellcheck disable=SC2086
    env $env /usr/bin/time -f '%e %U %S %M %R' -o "$work/time" "$binary" train \
      --config "$config" \
      --set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl" \
      --set "data.train_qrels=$data/qrels/train.tsv" --set "max_steps=$steps" --set "checkpoint_every=0" --set data.skip_bad_records=true \
      $extra --output "$run" >/dev/null 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    python3 - "$run/metrics.jsonl" "$work/time" "$name" "$r" "$extra" >>"$out.tmp" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steady = lines[5:]  # the first steps create the gradients and optimizer state
wall, user, system, rss_kb, minor = open(sys.argv[2]).read().split()
med = lambda k: statistics.median(l["seconds"][k] for l in steady)
counted = {}
if "allocations" in steady[0]:
    for k in ("count", "bytes", "large_count", "large_bytes", "peak_bytes"):
        counted[k] = statistics.median(l["allocations"][k] for l in steady)
print(json.dumps({"variant": sys.argv[3], "repeat": int(sys.argv[4]), "arguments": sys.argv[5],
                  "steps": len(lines), "step": med("total"), "encode": med("encode"), "loss": med("loss"),
                  "optimizer": med("optimizer"), "data": med("data"),
                  "final_loss": lines[-1]["loss"], "wall": float(wall), "user": float(user),
                  "system": float(system), "peak_rss_mb": int(rss_kb) / 1024, "minor_faults": int(minor),
                  "allocations": counted}))
PY
    tail -n 1 "$out.tmp" >&2
  done
done
mv "$out.tmp" "$out"
