#pragma once

#include "contaccum/core/option_table.h"
#include "contaccum/data/sampler.h"
#include "contaccum/data/training_batch.h"

#include <torch/arg.h>

#include <functional>
#include <string>
#include <vector>

namespace contaccum {

/// Turns texts into encoder inputs: `(texts, max_length) -> EncoderInput`
/// (e.g. `WordPieceTokenizer::encode_batch`), so any tokenizer can feed the
/// collator.
using TextEncoderFn = std::function<EncoderInput(const std::vector<std::string>& texts, int64_t max_length)>;

/// Options of `Collator`.
struct CollatorOptions {
  /// Token limit of a query (special tokens included). Default: 32.
  TORCH_ARG(int64_t, query_max_length) = 32;
  /// Token limit of a passage (special tokens included). Default: 256.
  TORCH_ARG(int64_t, passage_max_length) = 256;
  /// Collate into pinned host memory (`EncoderInput::pin_memory`), so that
  /// batches reach a GPU without blocking; `contaccum train` turns it on for
  /// a CUDA device. Needs a LibTorch with CUDA. Default: false.
  TORCH_ARG(bool, pin_memory) = false;

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<CollatorOptions>& fields();
};

/// Builds padded `TrainingBatch`es from sampled rows: query texts and passage
/// texts (title and text joined) are encoded with separate length limits.
class Collator {
 public:
  Collator(TextEncoderFn encode, CollatorOptions options = {});
  TrainingBatch operator()(const TrainingSet& set, const BatchIndices& indices) const;
  const CollatorOptions& options() const { return options_; }

 private:
  TextEncoderFn encode_;
  CollatorOptions options_;
};

}  // namespace contaccum
