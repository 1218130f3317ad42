#pragma once

#include "contaccum/encoders/registry.h"

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// Everything `contaccum train` needs, read from a YAML file plus `key=value`
/// overrides. Keys are the field names below; nested YAML maps spell dotted
/// keys (`data: {corpus: x}` is `data.corpus`). Unknown keys and values of the
/// wrong type or out of range are rejected, naming the key (and the file).
/// Relative paths are taken relative to the working directory.
struct TrainConfig {
  // --- data ---
  /// BEIR `corpus.jsonl`. Required.
  std::string data_corpus;
  /// BEIR `queries.jsonl` (training and dev queries). Required.
  std::string data_queries;
  /// Training qrels (`qrels/train.tsv`); used when no `data.hard_negatives`
  /// file is given.
  std::string data_train_qrels;
  /// Hard negatives by id (`train-hard-negatives.tsv`): training examples
  /// with mined negatives. Default: none.
  std::string data_hard_negatives;
  /// Dev qrels for periodic evaluation and `eval.json`. Default: none.
  std::string data_dev_qrels;
  /// Skip (and count) bad records instead of stopping. Default: false.
  bool data_skip_bad_records = false;
  /// Evaluate on at most this many dev queries (0: all). Default: 0.
  int64_t data_dev_max_queries = 0;

  // --- strategy ---
  /// full_batch, grad_accum, grad_cache, contaccum or contaccum_grad_cache.
  /// Default: contaccum.
  std::string strategy = "contaccum";
  /// Default: 128.
  int64_t total_batch = 128;
  /// Default: 8 (ignored by full_batch).
  int64_t micro_batch = 8;
  /// Default: 1024 (contaccum strategies only).
  int64_t memory_size = 1024;
  bool query_bank = true;
  bool passage_bank = true;
  bool bank_hard_negatives = true;
  bool clear_banks_after_step = false;
  /// Where banked representations come from: current (the towers being
  /// trained) or momentum (their moving average). Default: current.
  std::string bank_encoder = "current";
  /// The moving average's momentum with bank_encoder momentum, in [0, 1).
  /// Default: 0.999.
  double momentum = 0.999;
  /// Hard negatives per example. Default: 1.
  int64_t hard_negatives = 1;
  /// dot or cosine. Default: dot.
  std::string similarity = "dot";
  /// Default: 1.0.
  double temperature = 1.0;
  /// The loss computed one tile of the score matrix at a time
  /// (`InfoNCEOptions::tiled`): its memory stays one tile whatever the batch
  /// and bank. false: the whole matrix and its gradient at once. Default: true.
  bool tiled_loss = true;

  // --- encoder ---
  /// A registered encoder (built in: bag_of_embeddings, transformer).
  /// Default: bag_of_embeddings.
  std::string encoder = "bag_of_embeddings";
  /// One tower for queries and passages. Default: false.
  bool encoder_shared = false;
  /// Two towers start from the same initial weights, as two copies of one
  /// pretrained checkpoint do (ignored for a shared tower). Default: false.
  bool encoder_tied_init = false;
  /// The chosen encoder's options, `encoder_options.<key>` in the config:
  /// every key of every registered encoder (`EncoderRegistry`), at its
  /// default unless given; only the chosen encoder's are used. Built in:
  /// bag_of_embeddings `dim`, `embedding_dim` (256 each), `dropout` (0.1),
  /// `pooling` (mean or attention); transformer `hidden_size` (256),
  /// `layers` (4), `heads` (4), `intermediate_size` (1024), `dropout`,
  /// `pooling` (cls or mean), `pretrained` (a Hugging Face BERT directory).
  EncoderSettings encoder_options = EncoderRegistry::global().defaults();

  // --- tokenizer ---
  /// A `vocab.txt`; empty trains a WordPiece vocabulary on the corpus.
  std::string tokenizer_vocab;
  /// Size of a trained vocabulary. Default: 8000.
  int64_t tokenizer_vocab_size = 8000;
  /// Default: true.
  bool tokenizer_lower_case = true;
  /// Default: 32.
  int64_t query_max_length = 32;
  /// Default: 128.
  int64_t passage_max_length = 128;

  // --- optimisation ---
  /// Default: 1.
  int64_t epochs = 1;
  /// > 0 overrides epochs. Default: 0.
  int64_t max_steps = 0;
  /// Default: 2e-5.
  double lr = 2e-5;
  /// Default: 0.01.
  double weight_decay = 0.01;
  /// AdamW in one pass per parameter (`FusedAdamW`: the same numbers as
  /// `torch::optim::AdamW` bit for bit, without its temporaries); false
  /// uses `torch::optim::AdamW`. Default: true.
  bool fused_adamw = true;
  /// Lazy, row-sparse AdamW updates of embedding tables (only rows with
  /// gradient move; `FusedAdamW::set_row_sparse`). Needs fused_adamw.
  /// Default: false.
  bool row_sparse_embeddings = false;
  /// Default: 0.
  int64_t warmup_steps = 0;
  /// The learning rate the linear decay ends at, as a fraction of `lr`, in
  /// [0, 1]. Default: 0.
  double final_lr_ratio = 0.0;
  /// Default: 2.0; 0 disables clipping (negative values are refused).
  double max_grad_norm = 2.0;
  /// A step whose loss or gradient norm is not finite: `error` stops the run
  /// naming the step, `skip` drops it (nothing applied) and goes on.
  /// Default: error.
  std::string non_finite = "error";
  /// With non_finite: skip, this many skipped steps in a row stop the run.
  /// Default: 10.
  int64_t max_consecutive_skips = 10;
  /// Seeds the model's initialisation, dropout and the sampler. Default: 0.
  int64_t seed = 0;
  /// LibTorch intra-op threads; 0 keeps LibTorch's default. Default: 0.
  int64_t threads = 0;

  // --- several processes (`contaccum train --nproc-per-node`, torchrun) ---
  /// auto, gloo or nccl (see `DistributedOptions::backend`). Default: auto.
  std::string distributed_backend = "auto";
  /// Seconds a collective waits for the other ranks before the run fails (a
  /// dead or hung rank). Default: 1800.
  double distributed_timeout = 1800.0;

  // --- logging, evaluation, checkpoints ---
  /// Default: 20.
  int64_t log_every = 20;
  /// Steps between dev evaluations; 0: end of each epoch. Default: 0.
  int64_t eval_every = 0;
  /// Default: mrr@10.
  std::string eval_metric = "mrr@10";
  /// Default: 256.
  int64_t eval_batch_size = 256;
  /// Steps between checkpoints; 0: end of each epoch. Default: 0.
  int64_t checkpoint_every = 0;
  /// Default: 2.
  int64_t keep_checkpoints = 2;
  /// Steps between bank staleness measurements, written to metrics.jsonl
  /// (`staleness`); 0: off. Default: 0.
  int64_t staleness_every = 0;
  /// Writes what each step allocates to metrics.jsonl (`allocations`;
  /// `TrainerOptions::count_allocations`). Default: false.
  bool count_allocations = false;
  /// Banked examples re-encoded by each measurement (their token ids are
  /// kept beside the banks). Default: 256.
  int64_t staleness_sample = 256;

  /// Reads `path` and applies `overrides` ("key=value", YAML scalars). Throws
  /// `c10::Error` naming the file and key on an unknown key, a wrong type or
  /// an invalid value.
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  /// Parses YAML text; `source` names it in errors.
  static TrainConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {},
                           const std::string& source = "<config>");
  /// Every key with its value, as YAML that `parse` reads back to an equal
  /// config.
  std::string to_yaml() const;
  /// Throws, naming the key and value, when values are out of range or
  /// inconsistent (e.g. micro_batch not dividing total_batch).
  void validate() const;
  /// Names of every accepted key, in `to_yaml` order.
  static std::vector<std::string> keys();
};

}  // namespace contaccum
