#!/usr/bin/env bash
# What masking false negatives costs a step: ContAccum 8 x 16 with banks of
# M (the reproduction's base.yaml; default 8192, the largest bank it runs) on
# ../shared/data/debpkg, STEPS steps masked and unmasked, in turns (ROUNDS
# rounds), one thread each; prints the median step seconds of each (steps
# after the banks are full) and the masked entries per step.
#
# Usage: bash bench/masking/run.sh [DATA_DIR]
# Environment: MEMORY (default 8192), STEPS (default 200), ROUNDS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
memory=${MEMORY:-8192}
steps=${STEPS:-200}
rounds=${ROUNDS:-2}
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF >/dev/null
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in $(seq "$rounds"); do
  for mask in true false; do
    "$root/build/tools/contaccum" train --config "$root/examples/reproduce/base.yaml" \
      --set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl" \
      --set "data.hard_negatives=$data/train-hard-negatives.tsv" --set data.dev_qrels= \
      --set strategy=contaccum --set total_batch=128 --set micro_batch=8 --set "memory_size=$memory" \
      --set "mask_false_negatives=$mask" --set "max_steps=$steps" --set checkpoint_every=0 \
      --output "$work/$mask-$round" --progress silent >/dev/null 2>&1
  done
done
python3 - "$work" "$memory" "$rounds" <<'PY'
import json, statistics, sys
work, memory, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
full = memory // 128 + 1  # steps before the banks are full are cheaper
for mask in ("true", "false"):
    medians, masked = [], []
    for r in range(1, rounds + 1):
        lines = [json.loads(l) for l in open(f"{work}/{mask}-{r}/metrics.jsonl")][full:]
        medians.append(statistics.median(l["seconds"]["total"] for l in lines))
        masked.append(statistics.mean(sum(l["masked"].values()) for l in lines))
    print(f"mask_false_negatives={mask}: median step {statistics.mean(medians):.4f} s "
          f"(rounds: {', '.join(f'{m:.4f}' for m in medians)}), masked entries per step {statistics.mean(masked):.1f}")
PY
