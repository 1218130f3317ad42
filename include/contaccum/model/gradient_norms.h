#pragma once

#include "contaccum/model/dual_encoder.h"

namespace contaccum {

/// L2 norms of a dual encoder's accumulated gradients (`.grad`), per tower,
/// summed in float64. The trainer takes them after the gradients are final
/// for the step (after a cross-process reduction) and before clipping, which
/// uses `total`; `metrics.jsonl` reports them.
struct GradientNorms {
  double query = 0.0;
  double passage = 0.0;
  /// Over every parameter: `query` for a shared tower, else
  /// `hypot(query, passage)`.
  double total = 0.0;
  /// `query / passage` (the paper's stability diagnostic; 1 for a shared
  /// tower; NaN when the passage norm is 0).
  double ratio = 0.0;
};

/// Measures `model`'s gradients in one pass over its parameters with one
/// host synchronisation (CPU float32 gradients are summed in place without
/// a float64 copy; others on their device). Parameters without a gradient
/// count as zero. A non-finite gradient gives a non-finite norm.
GradientNorms gradient_norms(const DualEncoder& model);

}  // namespace contaccum
