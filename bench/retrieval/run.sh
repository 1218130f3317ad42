#!/usr/bin/env bash
# The figures of docs/RETRIEVAL.md, from one command:
#  1. quality on debpkg dev: the main job's retriever (examples/main_job/
#     config.yaml) trained on debpkg's training queries, then dense, BM25
#     (k1 0.9, b 0.4) and both hybrids with their weights tuned on the first
#     1,000 training queries;
#  2. indexes: exact search and every FAISS index type at several search
#     settings over the same encoded dev queries (bench/retrieval/
#     index_bench.cpp, 1 thread): build time, memory, queries/s, recall
#     against exact search;
#  3. scale: `contaccum eval` wall time and peak resident memory on generated
#     corpora of SCALE passages (default "100000 1000000 4000000").
# Writes bench/retrieval/{quality.json,index.jsonl,scale.jsonl} and the
# marked sections of docs/RETRIEVAL.md (bench/retrieval/report.py).
#
# Usage: bash bench/retrieval/run.sh [DATA_DIR]   (default: ../shared/data/debpkg)
# Environment: SCALE (passage counts; empty skips part 3), PARTS (default
# "quality index scale").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$(cd "$root/.." && pwd)/shared/data/debpkg}
scale=${SCALE-"100000 1000000 4000000"}
parts=${PARTS:-"quality index scale"}
[ -f "$data/corpus.jsonl" ] || { echo "no corpus.jsonl in $data" >&2; exit 1; }
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF -DCONTACCUM_BUILD_BENCHMARKS=ON >/dev/null
cli="$root/build/tools/contaccum"
bench="$root/build/bench/retrieval/contaccum_bench_index"
out="$root/bench/retrieval"
work="$root/build/bench-retrieval"
mkdir -p "$work"
has() { [[ " $parts " == *" $1 "* ]]; }

# The model: trained once per config and data set (reused while both are unchanged).
stamp=$( (cat "$root/examples/main_job/config.yaml"; echo "$data") | sha1sum | cut -c1-16)
if { has quality || has index; } &&
  { [ ! -f "$work/run/model/config.yaml" ] || [ "$(cat "$work/model.stamp" 2>/dev/null)" != "$stamp" ]; }; then
  rm -rf "$work/run"
  "$cli" train --config "$root/examples/main_job/config.yaml" --progress lines \
    --set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl" \
    --set "data.train_qrels=$data/qrels/train.tsv" --set "data.dev_qrels=$data/qrels/dev.tsv" \
    --set data.skip_bad_records=true --output "$work/run" >"$work/train.json"
  echo "$stamp" >"$work/model.stamp"
fi
model="$work/run/model"
# debpkg's corpus repeats one id (d:openjdk-17-jre); every command skips the
# repeat, and says so.
args=(--corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl" --qrels "$data/qrels/dev.tsv" --skip-bad-records)

if has quality; then
  head -n 1001 "$data/qrels/train.tsv" >"$work/tune.tsv"
  "$cli" eval --model "$model" "${args[@]}" >"$work/dense.json"
  "$cli" bm25 "${args[@]}" >"$work/bm25.json"
  for fusion in rrf linear; do
    "$cli" eval --model "$model" "${args[@]}" --hybrid-bm25 --fusion "$fusion" --tune-on "$work/tune.tsv" \
      >"$work/hybrid-$fusion.json"
  done
  python3 - "$work" "$out/quality.json" <<'PY'
import json, sys
work, target = sys.argv[1:3]
parts = {name: json.load(open(f"{work}/{name}.json")) for name in ["train", "dense", "bm25", "hybrid-rrf", "hybrid-linear"]}
json.dump(parts, open(target, "w"), indent=1)
PY
fi

if has index; then
  "$cli" encode --model "$model" --corpus "$data/corpus.jsonl" --skip-bad-records --output "$work/emb" >/dev/null
  "$bench" --model "$model" --corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl" \
    --qrels "$data/qrels/dev.tsv" --embeddings "$work/emb" --threads 1 --repeats 3 >"$out/index.jsonl"
fi

if has scale && [ -n "$scale" ]; then
  : >"$out/scale.jsonl"
  for n in $scale; do
    set_dir="$work/scale-$n"
    [ -f "$set_dir/corpus.jsonl" ] || "$cli" data synthetic --output "$set_dir" --passages "$n" --train-queries 2000 \
      --dev-queries 1000 --seed 7 >/dev/null
    if [ ! -f "$work/scale-model/model/config.yaml" ]; then
      # A 256-wide bag of embeddings whose vocabulary knows the generated words
      # (what is measured is eval's memory, not the model's quality).
      "$cli" train --config "$root/examples/main_job/config.yaml" --progress silent --set encoder_options.dim=256 \
        --set encoder_options.embedding_dim=256 --set passage_max_length=128 --set memory_size=256 \
        --set "data.corpus=$set_dir/corpus.jsonl" --set "data.queries=$set_dir/queries.jsonl" \
        --set "data.train_qrels=$set_dir/qrels/train.tsv" --set max_steps=20 --output "$work/scale-model" >/dev/null
    fi
    /usr/bin/time -f '%e %M' -o "$work/time-$n" "$cli" eval --model "$work/scale-model/model" \
      --corpus "$set_dir/corpus.jsonl" --queries "$set_dir/queries.jsonl" --qrels "$set_dir/qrels/dev.tsv" \
      >"$work/eval-$n.json" 2>"$work/eval-$n.log"
    # encode writes every embedding (n x 256 floats) but holds one block.
    /usr/bin/time -f '%e %M' -o "$work/encode-time-$n" "$cli" encode --model "$work/scale-model/model" \
      --corpus "$set_dir/corpus.jsonl" --output "$work/scale-emb" >/dev/null 2>"$work/encode-$n.log"
    rm -rf "$work/scale-emb"
    read -r seconds kb <"$work/time-$n"
    read -r encode_seconds encode_kb <"$work/encode-time-$n"
    dim=$(sed -n 's/^encoder_options.dim: //p' "$work/scale-model/model/config.yaml")
    python3 - "$n" "$seconds" "$kb" "$set_dir/corpus.jsonl" "$work/eval-$n.json" "$dim" "$encode_seconds" \
      "$encode_kb" >>"$out/scale.jsonl" <<'PY'
import json, os, sys
n, seconds, kb, corpus, result, dim, encode_seconds, encode_kb = sys.argv[1:9]
r = json.load(open(result))
print(json.dumps({"passages": int(n), "dim": int(dim), "wall_seconds": float(seconds), "peak_rss_mb": int(kb) / 1024,
                  "encode_seconds": float(encode_seconds), "encode_peak_rss_mb": int(encode_kb) / 1024,
                  "corpus_mb": os.path.getsize(corpus) / 2**20, "queries": r["queries"], "mrr@10": r["mrr@10"]}))
PY
  done
fi

python3 "$out/report.py" "$out" "$root/docs/RETRIEVAL.md"
