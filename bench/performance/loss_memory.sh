#!/usr/bin/env bash
# The loss's memory, tiled against untiled: `contaccum train` with GradCache
# (micro-batches of 512, so the towers' memory stays that of 512 examples)
# at total batch 1k to 16k, with `tiled_loss` true and false, on a generated
# data set (60,000 passages, 40,000 training queries). Each run trains
# STEPS steps; its peak resident memory (/usr/bin/time) and the peak bytes
# of tensors held during a step (metrics.jsonl `allocations.peak_bytes`)
# go to bench/performance/loss_memory.jsonl, one JSON object per run;
# bench/performance/report.py adds them to docs/PERFORMANCE.md.
#
# Usage: bash bench/performance/loss_memory.sh
# Environment: STEPS (default 2), BATCHES (default "1024 2048 4096 8192 16384").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
steps=${STEPS:-2}
batches=${BATCHES:-1024 2048 4096 8192 16384}
cli="$root/build/tools/contaccum"
out="$root/bench/performance/loss_memory.jsonl"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$cli" ] || bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF >/dev/null
"$cli" data synthetic --output "$work/data" --passages 60000 --train-queries 40000 --dev-queries 100 >/dev/null

: >"$out.tmp"
for batch in $batches; do
  for tiled in true false; do
    run="$work/run"
    rm -rf "$run"
    /usr/bin/time -f '%e %M' -o "$work/time" "$cli" train --config "$root/bench/performance/loss_memory.yaml" \
      --set "data.corpus=$work/data/corpus.jsonl" --set "data.queries=$work/data/queries.jsonl" \
      --set "data.train_qrels=$work/data/qrels/train.tsv" --set "total_batch=$batch" --set "tiled_loss=$tiled" \
      --set "max_steps=$steps" --set checkpoint_every=0 --set count_allocations=true \
      --output "$run" >/dev/null 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    python3 - "$run/metrics.jsonl" "$work/time" "$batch" "$tiled" >>"$out.tmp" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
wall, rss_kb = open(sys.argv[2]).read().split()
last = lines[-1]
print(json.dumps({"total_batch": int(sys.argv[3]), "tiled": sys.argv[4] == "true", "steps": len(lines),
                  "peak_rss_mb": int(rss_kb) / 1024, "step_peak_mb": last["allocations"]["peak_bytes"] / 2**20,
                  "step": last["seconds"]["total"], "loss_seconds": last["seconds"]["loss"],
                  "losses": [l["loss"] for l in lines], "wall": float(wall)}))
PY
    tail -n 1 "$out.tmp" >&2
  done
done
mv "$out.tmp" "$out"
