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

  /// Number of examples. Throws when queries and passages disagree.
  int64_t size() const;
  /// Passages per example, `1 + hard_negatives`.
  int64_t passages_per_example() const { return 1 + hard_negatives; }
  /// Examples `[begin, end)` (views, no copy).
  TrainingBatch slice(int64_t begin, int64_t end) const;
};

}  // namespace contaccum
