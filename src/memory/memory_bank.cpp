#include "contaccum/memory/memory_bank.h"

#include "contaccum/core/finite_rows.h"
#include "contaccum/core/strided_view.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <algorithm>

namespace contaccum {
namespace {
// Banked rows from a checkpoint: a NaN would turn every later loss NaN.
void check_finite(const torch::Tensor& rows) {
  const int64_t bad = first_non_finite_row(rows);
  TORCH_CHECK(bad < 0, "MemoryBank::load: banked row ", bad, " of ", rows.size(0),
              " holds a NaN or an infinity (a damaged checkpoint?)");
}

// `t` when it already has `sizes` and `options`' type and device, else a new
// tensor of them: an undo record's buffers serve step after step.
torch::Tensor reused(const torch::Tensor& t, at::IntArrayRef sizes, const torch::TensorOptions& options) {
  if (t.defined() && t.sizes() == sizes && t.dtype() == options.dtype() && t.device() == options.device()) return t;
  return torch::empty(sizes, options);
}

// Rows [0, count) of `rows` and `count` slots of `storage` from `first_slot`,
// wrapping at its end, copied one way or the other: at most two runs.
void copy_slots(const torch::Tensor& storage, int64_t first_slot, int64_t count, const torch::Tensor& rows,
                bool into_storage) {
  const int64_t first = std::min(count, storage.size(0) - first_slot);
  const auto copy = [&](int64_t slot, int64_t row, int64_t n) {
    const auto stored = narrow_view(storage, 0, slot, n), kept = narrow_view(rows, 0, row, n);
    into_storage ? stored.copy_(kept) : kept.copy_(stored);
  };
  copy(first_slot, 0, first);
  if (first < count) copy(0, first, count - first);
}

// Rows [0, n) of identities at `from` (rows `row_step` apart, `width`
// entries `column_step` apart) into the slots from `first_slot` of the
// identity table `to` (`stride` entries a row), wrapping at `capacity`; a
// slot's entries past `width` are -1. Slot by slot: the ATen operations this
// once took (a range, its remainder, an index fill and copy) cost more per
// micro-batch than the copying itself.
void write_id_rows(int64_t* to, int64_t stride, int64_t capacity, int64_t first_slot, const int64_t* from,
                   int64_t row_step, int64_t column_step, int64_t width, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    int64_t* row = to + ((first_slot + j) % capacity) * stride;
    for (int64_t k = 0; k < stride; ++k) row[k] = k < width ? from[j * row_step + k * column_step] : -1;
  }
}
}  // namespace

MemoryBank::MemoryBank(MemoryBankOptions options) : options_(options) {
  TORCH_CHECK(options_.capacity() >= 0, "MemoryBankOptions::capacity must be >= 0, got ", options_.capacity());
}

void MemoryBank::write_ids(const torch::Tensor& ids_in, int64_t n, int64_t dropped) {
  if (!ids_in.defined() && !ids_.defined()) return;
  torch::Tensor ids;
  if (ids_in.defined()) {
    TORCH_CHECK(
        ids_in.scalar_type() == torch::kLong && ids_in.dim() >= 1 && ids_in.dim() <= 2 && ids_in.size(0) == n + dropped,
        "MemoryBank::enqueue: ids must be [", n + dropped, "] or [", n + dropped, ", k] int64, got ", ids_in.sizes(),
        " ", ids_in.scalar_type());
    // Read through the pointer below, with its strides: no reshape, slice
    // or copy (a call each).
    ids = ids_in.device().is_cpu() ? ids_in : ids_in.to(torch::kCPU);
  }
  const int64_t width = ids.defined() ? (ids.dim() == 2 ? ids.size(1) : 1) : 0;
  const int64_t row_step = width > 0 ? ids.stride(0) : 0, column_step = ids.dim() == 2 ? ids.stride(1) : 1;
  if (!ids_.defined() || ids_.size(1) < width) {
    auto wider = torch::full({capacity(), std::max<int64_t>(width, 1)}, -1, torch::kLong);
    if (ids_.defined()) wider.narrow(1, 0, ids_.size(1)).copy_(ids_);
    ids_ = wider;
  }
  const int64_t* from = width > 0 ? ids.data_ptr<int64_t>() + dropped * row_step : nullptr;
  write_id_rows(ids_.data_ptr<int64_t>(), ids_.size(1), capacity(), head_, from, row_step, column_step, width, n);
}

torch::Tensor MemoryBank::ids() const {
  if (!ids_.defined()) return {};
  return narrow_view(ids_, 0, 0, size_);  // the storage itself when full
}

void MemoryBank::enqueue(const torch::Tensor& reps_in, int64_t tag, const torch::Tensor& ids) {
  TORCH_CHECK(reps_in.defined() && (reps_in.dim() == 2 || reps_in.dim() == 3),
              "MemoryBank::enqueue: reps must be [n, dim] or [n, entries, dim], got ",
              reps_in.defined() ? reps_in.sizes() : torch::IntArrayRef{});
  if (capacity() == 0) return;
  torch::NoGradGuard no_grad;
  auto reps = detached(reps_in);
  if (reps.dim() == 2) reps = reps.unsqueeze(1);
  if (!storage_.defined()) {
    storage_ = torch::empty({capacity(), reps.size(1), reps.size(2)},
                            reps.options().dtype(options_.dtype().value_or(reps.scalar_type())));
  }
  TORCH_CHECK(reps.size(1) == storage_.size(1) && reps.size(2) == storage_.size(2),
              "MemoryBank::enqueue: reps [n, entries, dim] = ", reps.sizes(), " must match the bank's [", capacity(),
              ", ", storage_.size(1), ", ", storage_.size(2), "]");
  // With a storage type, floating rows of any type are converted as written.
  const bool converts = options_.dtype().has_value() && reps.is_floating_point();
  TORCH_CHECK((converts || reps.scalar_type() == storage_.scalar_type()) && reps.device() == storage_.device(),
              "MemoryBank::enqueue: reps (", reps.scalar_type(), ", ", reps.device(), ") must match the bank (",
              storage_.scalar_type(), ", ", storage_.device(), ")");
  int64_t n = reps.size(0), dropped = 0;
  if (n > capacity()) {
    dropped = n - capacity();
    reps = narrow_view(reps, 0, dropped, capacity());
    n = capacity();
  }
  write_ids(ids, n, dropped);
  copy_slots(storage_, head_, n, reps, /*into_storage=*/true);
  for (int64_t j = 0; j < n; ++j) {
    const auto slot = static_cast<size_t>((head_ + j) % capacity());
    if (slot < tags_.size()) {
      tags_[slot] = tag;
    } else {
      tags_.push_back(tag);  // the bank is filling: slot == size
    }
  }
  head_ = (head_ + n) % capacity();
  size_ = std::min(capacity(), size_ + n);
}

int64_t MemoryBank::slot_for(int64_t count, int64_t row) const {
  TORCH_CHECK(row >= 0 && row < count, "MemoryBank::slot_for: row ", row, " is not in [0, ", count, ")");
  if (capacity() == 0) return -1;
  const int64_t dropped = std::max<int64_t>(0, count - capacity());
  if (row < dropped) return -1;
  return (head_ + row - dropped) % capacity();
}

torch::Tensor MemoryBank::view() const {
  if (!storage_.defined()) return {};
  // Full, as a ContAccum step finds it: the storage itself, no call.
  return narrow_view(storage_, 0, 0, size_);
}

torch::Tensor MemoryBank::ordered() const {
  if (!storage_.defined()) return {};
  if (!full()) return storage_.slice(0, 0, size_).clone();
  return torch::cat({storage_.slice(0, head_), storage_.slice(0, 0, head_)}, 0);
}

void MemoryBank::clear() {
  size_ = 0;
  head_ = 0;
  tags_.clear();
}

MemoryBank::Undo MemoryBank::undo_for(int64_t count) const {
  Undo u;
  undo_for(count, u);
  return u;
}

void MemoryBank::undo_for(int64_t count, Undo& u) const {
  TORCH_CHECK(count >= 0, "MemoryBank::undo_for: count must be >= 0, got ", count);
  u.head = head_;
  u.size = size_;
  u.tags.clear();
  const int64_t n = std::min(count, capacity());
  u.count = storage_.defined() ? n : 0;
  if (u.count == 0) {
    u.rows = u.ids = torch::Tensor();
    return;
  }
  // Copied run by run into the reused buffers: a range, its remainder and
  // two gathers into new tensors, as this was written first, made a dozen
  // ATen calls and two allocations a step.
  u.rows = reused(u.rows, {n, storage_.size(1), storage_.size(2)}, storage_.options());
  copy_slots(storage_, head_, n, u.rows, /*into_storage=*/false);
  if (ids_.defined()) {
    u.ids = reused(u.ids, {n, ids_.size(1)}, ids_.options());
    const int64_t width = ids_.size(1);
    const int64_t* from = ids_.data_ptr<int64_t>();
    int64_t* to = u.ids.data_ptr<int64_t>();
    for (int64_t j = 0; j < n; ++j) std::copy_n(from + ((head_ + j) % capacity()) * width, width, to + j * width);
  } else {
    u.ids = torch::Tensor();
  }
  for (int64_t j = 0; j < n; ++j) {
    const int64_t slot = (head_ + j) % capacity();
    if (slot < size_) u.tags.emplace_back(slot, tags_[static_cast<size_t>(slot)]);
  }
}

void MemoryBank::undo(const Undo& u) {
  if (u.rows.defined()) {
    TORCH_CHECK(storage_.defined() && u.rows.size(0) == u.count && u.rows.size(1) == storage_.size(1) &&
                    u.rows.size(2) == storage_.size(2) && u.head >= 0 && u.head < capacity() && u.count <= capacity(),
                "MemoryBank::undo: the undo record belongs to another bank");
    copy_slots(storage_, u.head, u.count, u.rows, /*into_storage=*/true);
    if (ids_.defined()) {
      // Identities enqueued since may have widened the lists: the rest is -1
      // (all of it when the record holds none).
      const int64_t kept = u.ids.defined() ? u.ids.size(1) : 0;
      write_id_rows(ids_.data_ptr<int64_t>(), ids_.size(1), capacity(), u.head,
                    kept > 0 ? u.ids.data_ptr<int64_t>() : nullptr, kept, 1, kept, u.count);
    }
  }
  // Slots that were valid before get their tags back; the rest fall out of
  // the valid prefix with the size.
  for (const auto& [slot, tag] : u.tags) tags_[static_cast<size_t>(slot)] = tag;
  head_ = u.head;
  size_ = u.size;
  tags_.resize(static_cast<size_t>(size_), -1);
}

void MemoryBank::save(torch::serialize::OutputArchive& archive) const {
  // Storage order and write position, not oldest-first: a bank restored from
  // a checkpoint then holds every row in the slot it had, so later products
  // and reductions over `view()` run in the same order as in a run that was
  // never interrupted.
  archive.write("capacity", torch::tensor(capacity(), torch::kLong));
  archive.write("size", torch::tensor(size_, torch::kLong));
  archive.write("head", torch::tensor(head_, torch::kLong));
  if (storage_.defined()) archive.write("storage", view().cpu());
  archive.write("tags", torch::tensor(tags_, torch::kLong));
  if (ids_.defined()) archive.write("ids", ids());
}

void MemoryBank::load(torch::serialize::InputArchive& archive, const torch::Device& device) {
  torch::Tensor cap, size, head;
  archive.read("capacity", cap);
  archive.read("size", size);
  TORCH_CHECK(cap.numel() == 1 && size.numel() == 1, "MemoryBank::load: capacity and size must be scalars");
  TORCH_CHECK(cap.item<int64_t>() == capacity(), "MemoryBank::load: saved capacity ", cap.item<int64_t>(),
              " != this bank's capacity ", capacity());
  const int64_t rows = size.item<int64_t>();
  TORCH_CHECK(rows >= 0 && rows <= capacity(), "MemoryBank::load: saved size ", rows, " is not in [0, ", capacity(),
              "]");
  clear();
  ids_ = torch::Tensor();  // the checkpoint's, if it has any (below)
  torch::Tensor contents;
  if (archive.try_read("head", head)) {
    TORCH_CHECK(head.numel() == 1, "MemoryBank::load: head must be a scalar");
    const int64_t at = head.item<int64_t>();
    // The valid rows are a prefix of the storage; the head is inside it
    // (0 while the bank is not full).
    TORCH_CHECK(at >= 0 && at < std::max<int64_t>(capacity(), 1) && (rows == capacity() || at == rows % capacity()),
                "MemoryBank::load: saved head ", at, " does not fit size ", rows, " and capacity ", capacity());
    if (!archive.try_read("storage", contents)) {
      TORCH_CHECK(rows == 0, "MemoryBank::load: saved size ", rows, " but no storage");
      storage_ = torch::Tensor();
      return;
    }
    TORCH_CHECK(contents.dim() == 3 && contents.size(0) == rows, "MemoryBank::load: saved storage ", contents.sizes(),
                " does not hold ", rows, " rows");
    check_finite(contents);
    const auto dtype = options_.dtype().value_or(contents.scalar_type());
    if (!storage_.defined() || storage_.size(1) != contents.size(1) || storage_.size(2) != contents.size(2) ||
        storage_.scalar_type() != dtype || storage_.device() != device) {
      storage_ = torch::empty({capacity(), contents.size(1), contents.size(2)},
                              contents.options().device(device).dtype(dtype));
    }
    storage_.slice(0, 0, rows).copy_(contents);
    size_ = rows;
    head_ = at;
    tags_.assign(static_cast<size_t>(rows), -1);
    torch::Tensor tags;
    if (archive.try_read("tags", tags)) {
      TORCH_CHECK(tags.dim() == 1 && tags.size(0) == rows && tags.scalar_type() == torch::kLong,
                  "MemoryBank::load: saved tags ", tags.sizes(), " do not hold ", rows, " integers");
      const auto t = tags.cpu().contiguous();  // a checkpoint loads onto the model's device
      std::copy(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + rows, tags_.begin());
    }
    torch::Tensor ids;
    if (archive.try_read("ids", ids)) {
      TORCH_CHECK(ids.dim() == 2 && ids.size(0) == rows && ids.scalar_type() == torch::kLong,
                  "MemoryBank::load: saved ids ", ids.sizes(), " do not hold ", rows, " rows of integers");
      ids_ = torch::full({capacity(), std::max<int64_t>(ids.size(1), 1)}, -1, torch::kLong);
      ids_.narrow(0, 0, rows).narrow(1, 0, ids.size(1)).copy_(ids);
    }
    return;
  }
  // Checkpoints written before the write position was saved hold the rows
  // oldest first.
  if (archive.try_read("contents", contents)) {
    TORCH_CHECK(contents.dim() == 3 && contents.size(0) == rows, "MemoryBank::load: saved contents ", contents.sizes(),
                " do not hold ", rows, " rows");
    check_finite(contents);
    if (storage_.defined() &&
        (storage_.size(1) != contents.size(1) || storage_.size(2) != contents.size(2) || storage_.device() != device ||
         (!options_.dtype() && storage_.scalar_type() != contents.scalar_type()))) {
      storage_ = torch::Tensor();
    }
    if (contents.size(0) > 0) enqueue(contents.to(device));
  }
}

}  // namespace contaccum
