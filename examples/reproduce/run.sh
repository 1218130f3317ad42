#!/usr/bin/env bash
# Reproduces the paper's central comparison on ../shared/data/debpkg with the
# library's CLI and writes docs/RESULTS.md (table, plots, commands, wall
# times). Every method in methods/*.set is trained with base.yaml for each
# seed, then evaluated on dev with `contaccum eval`; BM25 runs beside them.
#
# Usage: bash examples/reproduce/run.sh
# Environment: SEEDS (default "1 2 3"), JOBS (runs at once, default 2: each
# run uses one thread), METHODS (default: every methods/*.set; empty for none), EXTRA_CONFIGS
# (runs beyond the comparison: tuning and diagnostics, default: every
# extra/*.set; empty for none), EXTRA_SEEDS (default "1"), STALENESS (the
# bank staleness study: every staleness/*.set by default; empty for none),
# STALENESS_SEEDS (default "1 2 3"), MASKING (false-negative masking: every
# masking/*.set by default; empty for none; the other configurations set
# mask_false_negatives=false, as their archived runs were trained before
# masking existed), MASKING_SEEDS (default "1 2 3"), OUT (default
# build/reproduce), DATA (default ../shared/data/debpkg), EXTRA (more --set
# overrides for every run, e.g. "epochs=1" for a smoke test), REPORT (default
# docs/RESULTS.md; its plots go to results/ beside it), CHECKS (default 1; 0
# skips the equality checks, for tuning probes), ARCHIVE (default
# examples/reproduce/runs; empty for none).
# Finished runs (their dev.json exists) are kept, so an interrupted
# reproduction resumes where it stopped; each is also recorded in ARCHIVE
# (archive.py: evaluation and metrics, no model), which is committed and
# restored before the runs, so that runs finished in an earlier session or on
# another machine are not trained again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
seeds=${SEEDS:-1 2 3}
jobs=${JOBS:-2}
out=${OUT:-build/reproduce}
data=${DATA:-$(cd "$root/.." && pwd)/shared/data/debpkg}
methods=${METHODS-$(cd "$here/methods" && ls *.set | sed 's/\.set$//' | tr '\n' ' ')}
extra_configs=${EXTRA_CONFIGS-$(cd "$here/extra" && ls *.set | sed 's/\.set$//' | tr '\n' ' ')}
extra_seeds=${EXTRA_SEEDS:-1}
staleness=${STALENESS-$(cd "$here/staleness" && ls *.set | sed 's/\.set$//' | tr '\n' ' ')}
staleness_seeds=${STALENESS_SEEDS:-1 2 3}
masking=${MASKING-$(cd "$here/masking" && ls *.set | sed 's/\.set$//' | tr '\n' ' ')}
masking_seeds=${MASKING_SEEDS:-1 2 3}
archive=${ARCHIVE-$here/runs}
[ -f "$data/corpus.jsonl" ] || { echo "run.sh: no debpkg data set at $data (set DATA)" >&2; exit 1; }

bash scripts/install-deps.sh gnuplot-nox  # the plots
bash scripts/build.sh -DCONTACCUM_BUILD_TESTS=OFF
# Each run uses one thread (base.yaml); OpenBLAS would otherwise start a
# thread per core in every run, which spin against each other.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cli="$root/build/tools/contaccum"
mkdir -p "$out"
if [ -n "$archive" ]; then python3 "$here/archive.py" restore --runs "$out" --archive "$archive"; fi
# debpkg repeats one package (openjdk-17-jre); skipping keeps its first record.
data_args=(--corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl" --qrels "$data/qrels/dev.tsv"
  --skip-bad-records)

# Trains METHOD with SEED into DIR/run; more --set overrides may follow.
train_run() {
  local dir=$1 method=$2 seed=$3
  shift 3
  local sets=(--set "seed=$seed"
    --set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl"
    --set "data.hard_negatives=$data/train-hard-negatives.tsv" --set "data.dev_qrels=$data/qrels/dev.tsv")
  local file="$here/methods/$method.set"
  [ -f "$file" ] || file="$here/extra/$method.set"
  [ -f "$file" ] || file="$here/staleness/$method.set"
  [ -f "$file" ] || file="$here/masking/$method.set"
  while IFS= read -r line; do [ -n "$line" ] && sets+=(--set "$line"); done <"$file"
  for extra in ${EXTRA:-} "$@"; do sets+=(--set "$extra"); done
  # A run stopped part-way continues from its newest checkpoint.
  local resume=()
  [ -n "$(ls -A "$dir/run/checkpoints" 2>/dev/null)" ] && resume=(--resume)
  "$cli" train --config "$here/base.yaml" "${sets[@]}" --output "$dir/run" "${resume[@]}" >"$dir/train.json" 2>>"$dir/train.log"
}

# One run: train, then evaluate the final model on dev. Written so that xargs
# can call it: run_one METHOD SEED.
run_one() {
  local method=$1 seed=$2 dir="$out/$1/seed$2"
  [ -f "$dir/dev.json" ] && return 0
  local resumed=0
  if [ -n "$(ls -A "$dir/run/checkpoints" 2>/dev/null)" ]; then resumed=1; else rm -rf "$dir" && mkdir -p "$dir"; fi
  local start=$SECONDS
  # xargs runs this without errexit: every step is checked, and dev.json (the
  # mark of a finished run) is only written when all of them succeeded.
  train_run "$dir" "$method" "$seed" || { echo "run.sh: $method seed $seed: training failed, see $dir/train.log" >&2; return 1; }
  local train_seconds=$((SECONDS - start))
  # wall_seconds of a resumed run counts only its last part. (No heredoc here:
  # bash cannot export a function that holds one followed by `||`.)
  local stamp='import json, sys
path, seconds, method, seed, resumed = sys.argv[1:6]
d = json.load(open(path))
d.update(method=method, seed=int(seed), wall_seconds=int(seconds), resumed=resumed == "1")
json.dump(d, open(path, "w"))'
  "$cli" eval --model "$dir/run/model" "${data_args[@]}" --k 100 >"$dir/dev.tmp" 2>>"$dir/train.log" &&
    python3 -c "$stamp" "$dir/dev.tmp" "$train_seconds" "$method" "$seed" "$resumed" ||
    { echo "run.sh: $method seed $seed: evaluation failed, see $dir/train.log" >&2; return 1; }
  mv "$dir/dev.tmp" "$dir/dev.json"
  if [ -n "$archive" ]; then python3 "$here/archive.py" save --runs "$out" --archive "$archive" --run "$1/seed$2" >/dev/null; fi
  echo "[$(date +%H:%M:%S)] $method seed $seed: mrr@10 $(python3 -c "import json;print(round(json.load(open('$dir/dev.json'))['mrr@10'],4))") in ${train_seconds}s" >&2
}

# The spec's equalities on this data set, through the same CLI path as the
# runs: with dropout off, GradCache 8x16 must train exactly as DPR-128 and
# ContAccum with memory 0 exactly as GradAccum 8x16 (float rounding apart).
# 200 steps each, every step logged; report.py compares them step by step.
check_one() {
  local name=$1 method=$2
  shift 2
  local dir="$out/checks/$name"
  [ -f "$dir/run/eval.json" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir"
  train_run "$dir" "$method" 1 encoder_options.dropout=0 max_steps=200 log_every=1 "$@"
}
export -f run_one train_run
export out data here cli EXTRA archive
export -n data_args
if [ ! -f "$out/bm25.json" ]; then
  "$cli" bm25 "${data_args[@]}" --k 100 >"$out/bm25.tmp" && mv "$out/bm25.tmp" "$out/bm25.json"
fi

if [ "${CHECKS:-1}" = 1 ]; then
  check_one dpr-128 dpr-128
  check_one grad-cache-8x16 grad-cache-8x16
  check_one grad-accum-8x16 grad-accum-8x16
  check_one contaccum-memory-0 contaccum-8x16-m1024 memory_size=0
fi

{
  for method in $methods; do for seed in $seeds; do echo "$method $seed"; done; done
  for method in $extra_configs; do for seed in $extra_seeds; do echo "$method $seed"; done; done
  for method in $staleness; do for seed in $staleness_seeds; do echo "$method $seed"; done; done
  for seed in $masking_seeds; do for method in $masking; do echo "$method $seed"; done; done
} |
  xargs -P "$jobs" -L 1 bash -c 'data_args=(--corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl"
    --qrels "$data/qrels/dev.tsv" --skip-bad-records); run_one "$@"' _

# Where the best dense model and BM25 disagree at rank 1 (the discussion's
# comparison with BM25); skipped when that model was not trained.
best=contaccum-8x16-m1024-tuned-1024
# (A run restored from the archive has no model.)
if [ -d "$out/$best/seed1/run/model" ] && [ ! -f "$out/top1-overlap.txt" ]; then
  "$cli" eval --model "$out/$best/seed1/run/model" "${data_args[@]}" --k 1 --run "$out/$best.run" >/dev/null
  "$cli" bm25 "${data_args[@]}" --k 1 --run "$out/bm25.run" >/dev/null
  python3 "$here/top1_overlap.py" --qrels "$data/qrels/dev.tsv" --corpus "$data/corpus.jsonl" \
    --queries "$data/queries.jsonl" --run "$out/$best.run" --run "$out/bm25.run" >"$out/top1-overlap.tmp"
  mv "$out/top1-overlap.tmp" "$out/top1-overlap.txt"
fi

report=${REPORT:-docs/RESULTS.md}
# The command as invoked: the settings given in the environment, then the script.
command="bash examples/reproduce/run.sh"
for v in MASKING_SEEDS MASKING STALENESS_SEEDS STALENESS EXTRA_SEEDS EXTRA_CONFIGS METHODS SEEDS EXTRA CHECKS; do
  if [ -n "${!v+set}" ]; then command="$v=\"${!v}\" $command"; fi
done
python3 "$here/report.py" --runs "$out" --command "$command" --markdown "$report" \
  --figures "$(dirname "$report")/results"
