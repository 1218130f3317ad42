#pragma once

#include "contaccum/core/option_table.h"
#include "contaccum/core/similarity.h"
#include "contaccum/encoders/registry.h"

#include <torch/arg.h>

#include <cstdint>
#include <string>

namespace contaccum {

/// The files a training run reads (`data.*` in a config). Relative paths
/// are taken relative to the working directory.
struct TrainingDataOptions {
  /// BEIR `corpus.jsonl`. Required by `run_training`. Default: "".
  TORCH_ARG(std::string, corpus) = "";
  /// BEIR `queries.jsonl` (training and dev queries). Required by
  /// `run_training`. Default: "".
  TORCH_ARG(std::string, queries) = "";
  /// Training qrels (`qrels/train.tsv`): the training examples when no
  /// `hard_negatives` file is given; with one, every relevant passage of its
  /// queries (masked as false negatives, `mask_false_negatives`). Default:
  /// "".
  TORCH_ARG(std::string, train_qrels) = "";
  /// Hard negatives by id (`train-hard-negatives.tsv`): training examples
  /// with mined negatives. Default: "" (none).
  TORCH_ARG(std::string, hard_negatives) = "";
  /// Dev qrels for periodic evaluation and `eval.json`. Default: "" (none).
  TORCH_ARG(std::string, dev_qrels) = "";
  /// Skip (and count) bad records instead of stopping. Default: false.
  TORCH_ARG(bool, skip_bad_records) = false;
  /// Evaluate on at most this many dev queries (0: all). Default: 0.
  TORCH_ARG(int64_t, dev_max_queries) = 0;

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<TrainingDataOptions>& fields();
  /// Throws naming the key when a file `run_training` needs is not given.
  void require_files() const;
};

/// Where a run's WordPiece vocabulary comes from (`tokenizer.*`).
struct TokenizerOptions {
  /// A `vocab.txt`; empty trains a WordPiece vocabulary on the corpus (or
  /// takes a pretrained encoder's). Default: "".
  TORCH_ARG(std::string, vocab) = "";
  /// Size of a trained vocabulary; >= 100. Default: 8000.
  TORCH_ARG(int64_t, vocab_size) = 8000;
  /// Lower-case and strip accents before WordPiece. Default: true.
  TORCH_ARG(bool, lower_case) = true;

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<TokenizerOptions>& fields();
};

/// The towers a run builds: a registered encoder with its options.
struct ModelOptions {
  /// A registered encoder (`EncoderRegistry`; built in: bag_of_embeddings,
  /// transformer). Default: "bag_of_embeddings".
  TORCH_ARG(std::string, encoder) = "bag_of_embeddings";
  /// One tower for queries and passages. Default: false.
  TORCH_ARG(bool, shared) = false;
  /// Two towers start from the same initial weights, as two copies of one
  /// pretrained checkpoint do (ignored for a shared tower). Default: false.
  TORCH_ARG(bool, tied_init) = false;
  /// How the model scores (`DualEncoderOptions::similarity`; the loss reads
  /// it from the model). Default: `Similarity::Dot`.
  TORCH_ARG(Similarity, similarity) = Similarity::Dot;
  /// Every key of every registered encoder, at its default unless set; only
  /// the chosen encoder's are used. Default: `EncoderRegistry::global()
  /// .defaults()`.
  TORCH_ARG(EncoderSettings, encoder_options) = EncoderRegistry::global().defaults();

 public:
  /// The fields above but `encoder_options`, declared once (`OptionTable`).
  static const OptionTable<ModelOptions>& fields();
  /// One field per key of `EncoderRegistry::global()` (`prefix` + key), each
  /// typed as its default; their checks are the registry's (`validate`).
  static OptionTable<ModelOptions> encoder_option_fields(const std::string& prefix);
  /// Throws naming the key (`encoder_options.<key>`) when the encoder is not
  /// registered, a key is out of range or the chosen encoder refuses them.
  void validate() const;
  /// The pretrained directory its options name ("" when none).
  std::string pretrained_directory() const;
};

}  // namespace contaccum
