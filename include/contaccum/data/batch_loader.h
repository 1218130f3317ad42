#pragma once

#include "contaccum/data/collator.h"
#include "contaccum/data/prefetcher.h"
#include "contaccum/data/sampler.h"

#include <memory>
#include <optional>

namespace contaccum {

/// A collated batch and the rows it came from; `indices.next` is the sampler
/// position to resume from after training on it.
struct LoadedBatch {
  TrainingBatch batch;
  BatchIndices indices;
};

/// Sampling and collation (tokenization) on a background thread, `prefetch`
/// batches ahead of the trainer.
///
/// ```
/// BatchLoader loader(TrainingSampler(set, SamplerOptions(128).seed(1)), Collator(tokenize));
/// while (auto item = loader.next()) { ... strategy.compute_gradients(item->batch) ... }
/// ```
class BatchLoader {
 public:
  /// `max_batches`: stop after that many batches (-1: never stop).
  BatchLoader(TrainingSampler sampler, Collator collator, size_t prefetch = 2, int64_t max_batches = -1);
  /// The next batch, or `std::nullopt` after `max_batches`. Rethrows what
  /// sampling or collation threw.
  std::optional<LoadedBatch> next() { return prefetcher_->next(); }

 private:
  std::shared_ptr<TrainingSampler> sampler_;
  std::shared_ptr<const Collator> collator_;
  int64_t remaining_;
  std::unique_ptr<Prefetcher<LoadedBatch>> prefetcher_;  // last: its thread uses the members above
};

}  // namespace contaccum
