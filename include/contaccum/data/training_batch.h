#pragma once

#include "contaccum/core/encoder_input.h"

namespace contaccum {

/// One batch of training examples, the unit the strategies consume.
///
/// Example `i` is `queries` row `i` and `passages` rows
/// `[i * (1 + h), (i + 1) * (1 + h))`: its positive first, then its `h` hard
/// negatives. Keeping each example's passages together lets a micro-batch be
/// cut out of both inputs with plain row ranges.
struct TrainingBatch {
  /// One row per example.
  EncoderInput queries;
  /// `size() * (1 + hard_negatives)` rows, example-major, positive first.
  EncoderInput passages;
  /// Hard negatives per example (`h`). Default: 0.
  int64_t hard_negatives = 0;
  /// Optional `[size() * (1 + h)]` int64, aligned with `passages`: each
  /// passage row's identity, for masking false negatives (the collator
  /// writes the corpus row of the first passage with the same text).
  /// Undefined: `passage_identities()` hashes each row's tokens.
  torch::Tensor passage_ids;
  /// Optional `[size(), P]` int64, `-1` padding: the identities of every
  /// passage relevant to each query (its positive among them; the collator
  /// writes all the training qrels' relevant passages). Undefined: each
  /// query's one positive.
  torch::Tensor positive_ids;

  /// Number of examples. Throws when queries and passages disagree.
  int64_t size() const;
  /// Passages per example, `1 + hard_negatives`.
  int64_t passages_per_example() const { return 1 + hard_negatives; }
  /// Examples `[begin, end)` (views, no copy).
  TrainingBatch slice(int64_t begin, int64_t end) const;
  /// `passage_ids` as `[size(), 1 + h]` on the CPU; when undefined, a 64-bit
  /// hash of each passage row's token ids (the attended ones), so identical
  /// texts are identical passages. Non-negative either way.
  torch::Tensor passage_identities() const;
  /// `positive_ids` on the CPU; when undefined, `[size(), 1]`: each
  /// example's positive's identity.
  torch::Tensor positive_identities() const;
  /// The same, given this batch's `passage_identities()`: when it hashes
  /// the tokens, a caller that needs both (the strategies, every
  /// micro-batch) hashes them once.
  torch::Tensor positive_identities(const torch::Tensor& passage_identities) const;
};

}  // namespace contaccum
