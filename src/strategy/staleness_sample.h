#pragma once
// Internal: the inputs of the banked examples in a fixed set of bank slots,
// kept so that the staleness diagnostic can re-encode them. Not installed.

#include "contaccum/core/encoder_input.h"
#include "contaccum/data/training_batch.h"

#include <torch/serialize/archive.h>

#include <optional>
#include <vector>

namespace contaccum {
namespace detail {

// `size` slots spread evenly over a ring buffer of `capacity`: a FIFO bank
// writes every slot in turn, so the sampled rows cover every age the bank
// holds. Memory: the token tensors of `size` examples (query and passage
// group), whatever the capacity.
class StalenessSample {
 public:
  struct Entry {
    EncoderInput query;     // 1 row
    EncoderInput passages;  // the example's 1 + h rows
  };

  StalenessSample(int64_t size, int64_t capacity);
  int64_t size() const { return static_cast<int64_t>(slots_.size()); }
  // The sampled slots, ascending.
  const std::vector<int64_t>& slots() const { return slots_; }
  // Index of `slot` among the sampled ones, or -1.
  int64_t index_of(int64_t slot) const;
  // Keeps a copy of example `row` of `batch`, written to sampled slot `index`.
  void record(int64_t index, const TrainingBatch& batch, int64_t row);
  const std::vector<std::optional<Entry>>& entries() const { return entries_; }
  // Remembers the entries (a shallow copy) so that `undo_step` can put them
  // back when the step's bank writes are undone.
  void begin_step() { before_step_ = entries_; }
  void undo_step() { entries_ = before_step_; }

  void save(torch::serialize::OutputArchive& archive) const;
  // False, with every entry empty, when the archive keeps another sample
  // size or capacity: the slots fill again as the bank is written.
  bool load(torch::serialize::InputArchive& archive);

 private:
  int64_t capacity_;
  std::vector<int64_t> slots_;
  std::vector<std::optional<Entry>> entries_, before_step_;
};

}  // namespace detail
}  // namespace contaccum
