#!/usr/bin/env bash
# What `distributed.sparse_rows` saves where it matters most: the main job's
# recipe (examples/main_job/config.yaml: one shared bag-of-embeddings tower,
# a 16,000 x 1,024 embedding table, 17.4M parameters) at 2 ranks, with the
# gradients summed whole and without the rows no rank touched. Rounds
# interleave the two settings; each line is one run's median over its steps
# after 4 untimed: step seconds, the all-reduce's seconds and the bytes a rank
# sent for it (metrics.jsonl), and the loss at the last step (the same either
# way: the sums are bit for bit those of the whole tensors at 2 ranks).
#
# Usage: bash bench/distributed/sparse_rows.sh [DATA_DIR]
#        (default: ../shared/data/debpkg beside the repository)
# Environment: STEPS (default 20), ROUNDS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
steps=${STEPS:-20}
rounds=${ROUNDS:-2}
[ -f "$data/corpus.jsonl" ] || { echo "no corpus.jsonl in $data" >&2; exit 1; }
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF >/dev/null
cli="$root/build/tools/contaccum"
work="$root/build/bench-sparse-rows"
rm -rf "$work"
mkdir -p "$work"
for ((round = 1; round <= rounds; round++)); do
  for sparse in true false; do
    run="$work/$sparse-$round"
    "$cli" --threads 2 train --config "$root/examples/main_job/config.yaml" \
      --set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl" \
      --set "data.train_qrels=$data/qrels/train.tsv" --set data.skip_bad_records=true \
      --set "max_steps=$steps" --set checkpoint_every=1000000 --set "distributed.sparse_rows=$sparse" \
      --nproc-per-node 2 --output "$run" --progress silent >/dev/null 2>"$run.log"
    python3 - "$sparse" "$round" "$run/metrics.jsonl" <<'PY'
import json, statistics, sys
sparse, round_, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
steps = [json.loads(l) for l in open(path)]
timed = steps[4:]
med = lambda f: statistics.median(f(s) for s in timed)
print(json.dumps({"sparse_rows": sparse == "true", "round": round_, "step_seconds": med(lambda s: s["seconds"]["total"]),
                  "reduce_seconds": med(lambda s: s["seconds"]["reduce"]), "reduce_bytes": med(lambda s: s["reduce_bytes"]),
                  "last_loss": steps[-1]["loss"], "timed_steps": len(timed)}))
PY
  done
done
