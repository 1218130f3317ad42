#!/usr/bin/env bash
# What storing the banks in bf16 does to quality: ContAccum 8 x 16 with banks
# of 1,024 (examples/reproduce's recipe, base.yaml) trained with
# bank_dtype fp32 and bf16, the same seeds and binary, each evaluated on the
# debpkg dev split with `contaccum eval`. Runs two trainings at a time (one
# thread each). Prints one JSON line per run and a summary; docs/DEVICES.md
# quotes it.
# Usage: bash bench/precision/bank_dtype.sh [SEEDS...]   (default: 1 2)
# Environment: DATA (default ../shared/data/debpkg), OUT (default
# build/bank-dtype), CLI (default build/tools/contaccum).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
data=${DATA:-$(cd "$root/.." && pwd)/shared/data/debpkg}
out=${OUT:-$root/build/bank-dtype}
cli=${CLI:-$root/build/tools/contaccum}
seeds=("${@:-1 2}")
[ -x "$cli" ] || bash scripts/build.sh
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
one() {
  local dtype=$1 seed=$2 dir="$out/bank-$1/seed$2"
  mkdir -p "$dir"
  if [ ! -f "$dir/dev.json" ]; then
    local start=$SECONDS
    "$cli" train --config examples/reproduce/base.yaml --set "seed=$seed" \
      --set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl" \
      --set "data.hard_negatives=$data/train-hard-negatives.tsv" --set "data.dev_qrels=$data/qrels/dev.tsv" \
      --set strategy=contaccum --set total_batch=128 --set micro_batch=8 --set memory_size=1024 \
      --set "bank_dtype=$dtype" --output "$dir/run" >"$dir/train.json" 2>>"$dir/train.log"
    local seconds=$((SECONDS - start))
    "$cli" eval --model "$dir/run/model" --corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl" \
      --qrels "$data/qrels/dev.tsv" --skip-bad-records --k 100 >"$dir/dev.tmp" 2>>"$dir/train.log"
    python3 -c "import json, sys; d = json.load(open(sys.argv[1])); d.update(bank_dtype=sys.argv[2], seed=int(sys.argv[3]), train_seconds=int(sys.argv[4])); json.dump(d, open(sys.argv[5], 'w'))" \
      "$dir/dev.tmp" "$dtype" "$seed" "$seconds" "$dir/dev.json"
  fi
  cat "$dir/dev.json" && echo
}
export -f one
export out data cli
for seed in ${seeds[*]}; do for dtype in fp32 bf16; do echo "$dtype $seed"; done; done |
  xargs -P 2 -L 1 bash -c 'one "$@"' _
python3 - "$out" <<'PY'
import glob, json, sys
rows = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/bank-*/seed*/dev.json"))]
for dtype in ("fp32", "bf16"):
    r = [x for x in rows if x["bank_dtype"] == dtype]
    if r:
        print(f"bank_dtype {dtype}: seeds {[x['seed'] for x in r]} mrr@10 {[round(x['mrr@10'], 4) for x in r]}"
              f" mean {sum(x['mrr@10'] for x in r) / len(r):.4f}")
PY
