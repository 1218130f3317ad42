#include "contaccum/data/sampler.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace contaccum {
namespace {

// SplitMix64 finaliser: decorrelates nearby (seed, epoch, example) triples.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t seed_of(uint64_t seed, int64_t epoch, int64_t example) {
  return mix(mix(mix(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(example + 1));
}

}  // namespace

TrainingSampler::TrainingSampler(std::shared_ptr<const TrainingSet> set, SamplerOptions options)
    : set_(std::move(set)), options_(options) {
  TORCH_CHECK(set_ != nullptr, "TrainingSampler: set must not be null");
  TORCH_CHECK(options_.total_batch() > 0, "SamplerOptions::total_batch must be > 0, got ", options_.total_batch());
  TORCH_CHECK(options_.hard_negatives() >= 0, "SamplerOptions::hard_negatives must be >= 0, got ",
              options_.hard_negatives());
  TORCH_CHECK(!set_->empty(), "TrainingSampler: the training set is empty");
  TORCH_CHECK(batches_per_epoch() > 0, "TrainingSampler: ", set_->size(),
              " examples make no batch of total_batch = ", options_.total_batch(), " with drop_last");
  // Random fallback negatives need passages other than the positive.
  TORCH_CHECK(options_.hard_negatives() == 0 || set_->passages().size() > 1,
              "TrainingSampler: hard_negatives = ", options_.hard_negatives(),
              " needs a passage table of more than one passage");
}

int64_t TrainingSampler::batches_per_epoch() const {
  const int64_t n = set_->size(), b = options_.total_batch();
  return options_.drop_last() ? n / b : (n + b - 1) / b;
}

const std::vector<int64_t>& TrainingSampler::order(int64_t epoch) {
  if (order_epoch_ != epoch) {
    order_.resize(static_cast<size_t>(set_->size()));
    std::iota(order_.begin(), order_.end(), 0);
    if (options_.shuffle()) {
      std::mt19937_64 rng(seed_of(options_.seed(), epoch, -1));
      // Hand-rolled Fisher-Yates: std::shuffle's draws are implementation
      // defined, and the order must not change with the standard library.
      for (size_t i = order_.size() - 1; i > 0; --i) {
        std::swap(order_[i], order_[static_cast<size_t>(rng() % (i + 1))]);
      }
    }
    order_epoch_ = epoch;
  }
  return order_;
}

int64_t TrainingSampler::positive_of(int64_t example, int64_t epoch) const {
  const auto positives = set_->positives(example);
  if (positives.size() == 1) return positives[0];
  // A stream of its own, so that the negatives drawn do not depend on it.
  const uint64_t draw = mix(seed_of(options_.seed() ^ 0x5851f42d4c957f2dULL, epoch, example));
  return positives[static_cast<size_t>(draw % positives.size())];
}

void TrainingSampler::negatives_of(int64_t example, int64_t epoch, std::vector<int64_t>& out) const {
  const int64_t h = options_.hard_negatives();
  std::mt19937_64 rng(seed_of(options_.seed(), epoch, example));
  const auto positives = set_->positives(example);
  const auto start = out.size();
  auto usable = [&](int64_t row) {
    return std::find(positives.begin(), positives.end(), row) == positives.end() &&
           std::find(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(), row) == out.end();
  };
  auto draw_from = [&](c10::ArrayRef<int64_t> pool) {
    std::vector<int64_t> candidates(pool.begin(), pool.end());
    for (size_t i = 0; i < candidates.size() && static_cast<int64_t>(out.size() - start) < h; ++i) {
      std::swap(candidates[i], candidates[i + static_cast<size_t>(rng() % (candidates.size() - i))]);
      if (usable(candidates[i])) out.push_back(candidates[i]);
    }
  };
  draw_from(set_->hard_negatives(example));
  draw_from(set_->other_negatives(example));
  const int64_t corpus = set_->passages().size();
  // Random passages; with a tiny corpus duplicates are allowed rather than
  // looping forever.
  for (int64_t tries = 0; static_cast<int64_t>(out.size() - start) < h; ++tries) {
    const int64_t row = static_cast<int64_t>(rng() % static_cast<uint64_t>(corpus));
    if (usable(row) || tries > 64 * h) out.push_back(row);
  }
}

BatchIndices TrainingSampler::next() {
  if (position_.batch >= batches_per_epoch()) position_ = {position_.epoch + 1, 0};
  const auto& ord = order(position_.epoch);
  const int64_t begin = position_.batch * options_.total_batch();
  const int64_t end = std::min<int64_t>(begin + options_.total_batch(), set_->size());
  BatchIndices out;
  out.hard_negatives = options_.hard_negatives();
  out.position = position_;
  for (int64_t i = begin; i < end; ++i) {
    const int64_t example = ord[static_cast<size_t>(i)];
    out.examples.push_back(example);
    out.queries.push_back(set_->query(example));
    out.passages.push_back(positive_of(example, position_.epoch));
    negatives_of(example, position_.epoch, out.passages);
  }
  position_.batch += 1;
  if (position_.batch >= batches_per_epoch()) position_ = {position_.epoch + 1, 0};
  out.next = position_;
  return out;
}

void TrainingSampler::seek(SamplerPosition position) {
  TORCH_CHECK(position.epoch >= 0 && position.batch >= 0 && position.batch < batches_per_epoch(),
              "TrainingSampler::seek: position (epoch ", position.epoch, ", batch ", position.batch,
              ") is outside an epoch of ", batches_per_epoch(), " batches");
  position_ = position;
}

}  // namespace contaccum
