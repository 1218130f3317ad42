#pragma once

#include "contaccum/data/training_set.h"

#include <torch/arg.h>

#include <memory>
#include <vector>

namespace contaccum {

/// Options of `TrainingSampler`.
struct SamplerOptions {
  /* implicit */ SamplerOptions(int64_t total_batch) : total_batch_(total_batch) {}
  /// Examples per batch (one optimizer step). Required, > 0.
  TORCH_ARG(int64_t, total_batch);
  /// Hard negatives per example (`h`). Default: 1 (DPR).
  TORCH_ARG(int64_t, hard_negatives) = 1;
  /// Seed of every random choice. Default: 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Shuffle the examples every epoch. Default: true.
  TORCH_ARG(bool, shuffle) = true;
  /// Drop the last batch of an epoch when it is smaller than `total_batch`.
  /// Default: true.
  TORCH_ARG(bool, drop_last) = true;
};

/// Where a sampler is: the next batch it hands out is batch `batch` of epoch
/// `epoch`.
struct SamplerPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const SamplerPosition& o) const { return epoch == o.epoch && batch == o.batch; }
};

/// One batch as rows of the training set's tables.
struct BatchIndices {
  /// Example indices in the training set.
  std::vector<int64_t> examples;
  /// Query rows, one per example.
  std::vector<int64_t> queries;
  /// Passage rows, example-major: each example's positive, then its hard
  /// negatives (the layout `TrainingBatch` expects).
  std::vector<int64_t> passages;
  int64_t hard_negatives = 0;
  /// Position of this batch, and of the one after it.
  SamplerPosition position, next;
};

/// Cuts a training set into batches, epoch after epoch.
///
/// Every random choice (the epoch's order, each example's negatives) is a
/// function of (seed, epoch, example), so a sampler is deterministic and can
/// resume from any `position()` with `seek`. An example's positive is one of
/// its positives, drawn per (seed, epoch, example) when it has several; its
/// hard negatives are drawn without replacement from its mined
/// hard negatives, then its other negatives, then (as DPR does) random corpus
/// passages when it has fewer than `hard_negatives`. Negatives never repeat
/// the example's positives.
class TrainingSampler {
 public:
  TrainingSampler(std::shared_ptr<const TrainingSet> set, SamplerOptions options);

  /// The next batch; moves on to the next epoch after the last one.
  BatchIndices next();
  /// Batches in one epoch.
  int64_t batches_per_epoch() const;
  SamplerPosition position() const { return position_; }
  /// Continue from `position` (as returned by `position()` or `next().next`).
  void seek(SamplerPosition position);
  const SamplerOptions& options() const { return options_; }
  const TrainingSet& set() const { return *set_; }

 private:
  const std::vector<int64_t>& order(int64_t epoch);
  int64_t positive_of(int64_t example, int64_t epoch) const;
  void negatives_of(int64_t example, int64_t epoch, std::vector<int64_t>& out) const;

  std::shared_ptr<const TrainingSet> set_;
  SamplerOptions options_;
  SamplerPosition position_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

}  // namespace contaccum
