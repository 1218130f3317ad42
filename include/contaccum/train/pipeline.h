#pragma once

#include "contaccum/data/collator.h"
#include "contaccum/eval/metrics.h"
#include "contaccum/model/dual_encoder.h"
#include "contaccum/text/wordpiece_tokenizer.h"
#include "contaccum/train/train_config.h"
#include "contaccum/train/trainer.h"

#include <memory>
#include <optional>
#include <string>

namespace contaccum {

class TextTable;

/// A dual encoder with the tokenizer and config it was built from: what
/// `contaccum train` saves and `contaccum eval` loads.
struct TrainedModel {
  DualEncoder model{nullptr};
  std::shared_ptr<const WordPieceTokenizer> tokenizer;
  TrainConfig config;
  /// `tokenizer->encode_batch` as the collator and the evaluation take it.
  TextEncoderFn text_encoder() const;
};

/// Builds the tokenizer and a freshly initialised dual encoder as `config`
/// says: the vocabulary from `tokenizer.vocab`, from the pretrained
/// directory, or trained on `corpus` (every passage) when neither is given.
/// Seeds torch's generator with `config.seed` first, so the initialisation
/// is reproducible.
TrainedModel build_model(const TrainConfig& config, const TextTable* corpus);

/// Writes `directory/config.yaml`, `vocab.txt` and `weights.pt` (each
/// atomically; a transformer's towers also as Hugging Face directories
/// `query_encoder/` and `passage_encoder/`).
void save_model(const TrainedModel& model, const std::string& directory);

/// Reads what `save_model` wrote. Throws naming the file on a missing or
/// mismatched part.
TrainedModel load_model(const std::string& directory);

/// What `run_training` did.
struct TrainingRun {
  TrainResult train;
  /// The final model on the dev split, when `data.dev_qrels` is set.
  std::optional<RetrievalMetrics> dev;
  /// Seconds spent loading data and building the tokenizer.
  double setup_seconds = 0.0;
  /// Trainable numbers in the model (both towers; once when shared).
  int64_t parameters = 0;
};

/// The whole `contaccum train` job: reads the data named in `config`, builds
/// tokenizer and model, trains with the configured strategy (evaluating on the
/// dev split when given), and writes into `output_dir`: `config.yaml`,
/// `metrics.jsonl`, `checkpoints/`, the final model in `model/`, the best one
/// in `best/` (with a dev split) and `eval.json`. With `resume`, continues
/// from the newest checkpoint in `output_dir` (the config must match).
///
/// With a `collective` of several ranks (every rank calls it with the same
/// config): each rank reads the data and builds the same model; the trainer
/// splits every batch among the ranks (`Trainer::set_collective`); the dev
/// evaluation encodes the corpus sharded across them; only rank 0 writes
/// files and logs. Null: one process.
TrainingRun run_training(const TrainConfig& config, const std::string& output_dir, bool resume = false,
                         ProgressMode progress = ProgressMode::Auto, std::shared_ptr<Collective> collective = nullptr);

}  // namespace contaccum
