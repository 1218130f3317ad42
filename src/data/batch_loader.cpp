#include "contaccum/data/batch_loader.h"

namespace contaccum {

BatchLoader::BatchLoader(TrainingSampler sampler, Collator collator, size_t prefetch, int64_t max_batches)
    : sampler_(std::make_shared<TrainingSampler>(std::move(sampler))),
      collator_(std::make_shared<const Collator>(std::move(collator))),
      remaining_(max_batches) {
  prefetcher_ = std::make_unique<Prefetcher<LoadedBatch>>(
      [this]() -> std::optional<LoadedBatch> {
        if (remaining_ == 0) return std::nullopt;
        if (remaining_ > 0) --remaining_;
        LoadedBatch item;
        item.indices = sampler_->next();
        item.batch = (*collator_)(sampler_->set(), item.indices);
        return item;
      },
      prefetch);
}

}  // namespace contaccum
