#!/usr/bin/env bash
# What `distributed.overlap_gather` does at 2 ranks: the recipe of run.sh
# (recipe.sh) with each rank encoding its next micro-batch while the last
# one's gather is in flight (on, the default) and waiting at every gather
# (off), same binary, the two alternating within each round. One JSON line
# per run: the median step, gather and all-reduce seconds after 4 untimed
# steps (metrics.jsonl), every rank's peak resident memory, and the loss of
# the last step (the same either way: the computation is the same, bit for
# bit). Writes bench/distributed/overlap.jsonl.
#
# Usage: bash bench/distributed/overlap.sh [DATA_DIR]
#        (default: ../shared/data/debpkg beside the repository)
# Environment: STEPS (default 24), ROUNDS (default 2),
# STRATEGIES (default "grad_accum contaccum").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
steps=${STEPS:-24}
rounds=${ROUNDS:-2}
strategies=${STRATEGIES:-"grad_accum contaccum"}
work="$root/build/bench-overlap"
# shellcheck source=bench/distributed/recipe.sh
source "$root/bench/distributed/recipe.sh"
out="$root/bench/distributed/overlap.jsonl"
: >"$out"
for ((round = 1; round <= rounds; round++)); do
  for s in $strategies; do
    for overlap in false true; do
      run="$work/$s-$overlap-$round"
      "$cli" --threads 2 train --config "$config" "${common[@]}" --set "strategy=$s" \
        --set "distributed.overlap_gather=$overlap" --nproc-per-node 2 --output "$run" --progress silent \
        >"$run.json" 2>"$run.log"
      python3 - "$s" "$overlap" "$round" "$run" <<'PY' | tee -a "$out"
import json, statistics, sys
strategy, overlap, round_, run = sys.argv[1], sys.argv[2] == "true", int(sys.argv[3]), sys.argv[4]
steps = [json.loads(l) for l in open(run + "/metrics.jsonl")]
timed = steps[4:]
med = lambda key: statistics.median(s["seconds"][key] for s in timed)
result = json.loads(open(run + ".json").read().strip().splitlines()[-1])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"strategy": strategy, "overlap_gather": overlap, "round": round_, "ranks": 2,
                  "step_seconds": med("total"), "gather_seconds": med("gather"), "reduce_seconds": med("reduce"),
                  "peak_rss_mb": result["peak_rss_mb"], "last_loss": steps[-1]["loss"], "timed_steps": len(timed),
                  "machine": cpu}))
PY
    done
  done
done
