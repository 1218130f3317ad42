# The data-parallel benchmarks' recipe, sourced by run.sh and overlap.sh
# with `root`, `data`, `steps` and `work` set: builds the CLI, makes `work`
# afresh, falls back on a generated data set without `data`, and sets `cli`,
# `config`, `total_batch` and `common` (the --set arguments of every run,
# the vocabulary built once included).
total_batch=64
bash "$root/scripts/build.sh" -DCONTACCUM_BUILD_TESTS=OFF >/dev/null
cli="$root/build/tools/contaccum"
rm -rf "$work"
mkdir -p "$work"
if [ ! -f "$data/corpus.jsonl" ]; then
  echo "no corpus.jsonl in $data: using a generated data set" >&2
  "$cli" data synthetic --output "$work/data" >/dev/null
  data="$work/data"
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# A small BERT (2 layers, 128 wide) so a step is tower-bound as in real use;
# total batch 64, micro-batch 8 per rank, banks of 256.
common=(--set "data.corpus=$data/corpus.jsonl" --set "data.queries=$data/queries.jsonl"
  --set "data.train_qrels=$data/qrels/train.tsv" --set data.skip_bad_records=true --set "max_steps=$steps" --set "total_batch=$total_batch"
  --set micro_batch=8 --set memory_size=256 --set hard_negatives=0 --set encoder=transformer
  --set encoder_options.hidden_size=128 --set encoder_options.layers=2 --set encoder_options.heads=2
  --set encoder_options.intermediate_size=512 --set encoder_options.dim=128 --set encoder_options.dropout=0.1
  --set query_max_length=32 --set passage_max_length=128 --set tokenizer.vocab_size=8000
  --set checkpoint_every=1000000 --set log_every=1000)
if [ -f "$data/train-hard-negatives.tsv" ]; then
  common+=(--set "data.hard_negatives=$data/train-hard-negatives.tsv" --set hard_negatives=1)
fi
config="$work/config.yaml"
printf 'strategy: grad_accum\n' >"$config"
# The vocabulary once, reused by every run.
"$cli" --threads 1 train --config "$config" "${common[@]}" --set max_steps=1 --output "$work/vocab" --progress silent \
  >/dev/null
common+=(--set "tokenizer.vocab=$work/vocab/vocab.txt")
