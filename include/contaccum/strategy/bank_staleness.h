#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace contaccum {

/// Cosines between banked representations and what the current towers make
/// of the same inputs, over the rows of one age range.
struct StalenessStats {
  /// Ages covered, inclusive: optimizer steps since the rows were encoded
  /// (measured after a step's update, the newest rows have age 1).
  int64_t min_age = 0, max_age = 0;
  /// Representations compared (a banked passage group counts each stored
  /// passage).
  int64_t rows = 0;
  double mean_cosine = std::numeric_limits<double>::quiet_NaN();
  double min_cosine = std::numeric_limits<double>::quiet_NaN();
};

/// One bank's staleness: over the whole sample and by age bucket (ages 0, 1,
/// 2-3, 4-7, 8-15, ...; only buckets holding rows).
struct BankSideStaleness {
  StalenessStats all;
  std::vector<StalenessStats> by_age;
};

/// What `Strategy::measure_staleness` found: the sampled banked examples
/// re-encoded with the current towers, without autograd, in eval mode (no
/// dropout; the banked rows were encoded in training mode, so with dropout
/// cosine 1 is out of reach even for a frozen encoder: the floor shows at the
/// youngest age).
struct BankStaleness {
  /// Banked examples re-encoded.
  int64_t examples = 0;
  /// Cosines in float64, per bank (rows = 0 for a bank that is off).
  BankSideStaleness query, passage;
  /// Of the sampled examples with both a banked query and a banked positive:
  /// the share whose positive ranks at another place among the sample's
  /// positives for its own query once both sides are re-encoded (scores as
  /// the loss's similarity), and how many were ranked.
  double rank_changed = std::numeric_limits<double>::quiet_NaN();
  int64_t ranked = 0;
  /// Wall-clock seconds of the measurement (re-encoding dominates).
  double seconds = 0.0;
};

}  // namespace contaccum
