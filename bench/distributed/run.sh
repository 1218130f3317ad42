#!/usr/bin/env bash
# Data-parallel scaling: examples/s of 1, 2 and 4 ranks (1 thread each) per
# strategy through `contaccum train --nproc-per-node W`, the share of a step
# spent in collectives (the engine's all-gathers + the trainer's gradient
# all-reduce, from metrics.jsonl) and every rank's peak resident memory
# (the command's final JSON). Writes bench/distributed/results.jsonl and the
# table in docs/DISTRIBUTED.md (bench/distributed/report.py).
#
# Usage: bash bench/distributed/run.sh [DATA_DIR]
#        (default: ../shared/data/debpkg beside the repository; without it a
#        generated data set stands in)
# Environment: STEPS (optimizer steps per run, default 20; the first 4 are
# not timed), RANKS (default "1 2"; 4 adds two processes per core),
# STRATEGIES (default: all five), ROUNDS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
steps=${STEPS:-20}
ranks=${RANKS:-"1 2"}
strategies=${STRATEGIES:-"full_batch grad_accum grad_cache contaccum contaccum_grad_cache"}
rounds=${ROUNDS:-2}
work="$root/build/bench-distributed"
# shellcheck source=bench/distributed/recipe.sh
source "$root/bench/distributed/recipe.sh"
out="$root/bench/distributed/results.jsonl"
: >"$out"
# One JSON line per run: its median step and collectives.
summarize() { # KIND STRATEGY RANKS ROUND RUN_DIR RESULT_JSON
  python3 - "$@" "$total_batch" <<'PY'
import json, statistics, sys
kind, strategy, world, round_, run, result, total_batch = sys.argv[1:8]
config = dict(l.split(": ", 1) for l in open(run + "/config.yaml").read().splitlines() if ": " in l and not l.startswith(" "))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
steps = [json.loads(l) for l in open(run + "/metrics.jsonl")][4:]
med = lambda key: statistics.median(s["seconds"][key] for s in steps)
total = med("total")
result = json.loads(result)
print(json.dumps({"kind": kind, "strategy": strategy, "ranks": int(world), "round": int(round_),
                  "step_seconds": total, "examples_per_second": int(total_batch) / total,
                  "encode_seconds": med("encode"), "gather_seconds": med("gather"), "reduce_seconds": med("reduce"),
                  "reduce_bytes": statistics.median(s.get("reduce_bytes", 0) for s in steps),
                  "collective_share": (med("gather") + med("reduce")) / total, "peak_rss_mb": result["peak_rss_mb"],
                  "timed_steps": len(steps), "parameters": result["parameters"],
                  "total_batch": int(total_batch), "micro_batch": 8, "memory_size": 256, "dim": 128,
                  "group": 1 + int(config.get("hard_negatives", "0")),
                  "machine": f"{cpu}, {len(open('/proc/cpuinfo').read().split('processor')) - 1} cores"}))
PY
}
train() { # STRATEGY RANKS RUN_DIR
  "$cli" --threads "$2" train --config "$config" "${common[@]}" --set "strategy=$1" --nproc-per-node "$2" \
    --output "$3" --progress silent 2>"$3.log"
}
# Rounds interleave the configurations (every strategy and rank count, then
# again) so that the machine's drift hits them alike; each round also runs
# two independent 1-rank GradAccum trainings at once, the most 2 ranks could
# get from 2 cores with no communication at all.
for ((round = 1; round <= rounds; round++)); do
  for s in $strategies; do
    for w in $ranks; do
      run="$work/$s-$w-$round"
      result=$(train "$s" "$w" "$run")
      summarize run "$s" "$w" "$round" "$run" "$result" >>"$out"
      tail -1 "$out"
    done
  done
  a="$work/pair-a-$round" b="$work/pair-b-$round"
  train grad_accum 1 "$a" >"$a.json" &
  pair=$!
  train grad_accum 1 "$b" >"$b.json"
  wait "$pair"
  summarize independent_pair grad_accum 1 "$round" "$a" "$(cat "$a.json")" >>"$out"
  summarize independent_pair grad_accum 1 "$round" "$b" "$(cat "$b.json")" >>"$out"
  tail -2 "$out"
done
# The collectives of a step alone (no compute, every rank entering each at
# the same moment): the communication's own share of the limit.
bash "$root/bench/build.sh" contaccum_bench_collectives
"$root/build-bench/bench/distributed/contaccum_bench_collectives" --ranks 2 | tee -a "$out"
python3 "$root/bench/distributed/report.py" "$out" "$root/docs/DISTRIBUTED.md"
