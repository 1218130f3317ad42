#pragma once

#include <torch/arg.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <utility>
#include <vector>

namespace contaccum {

/// Options of `MemoryBank`.
struct MemoryBankOptions {
  /* implicit */ MemoryBankOptions(int64_t capacity = 0) : capacity_(capacity) {}
  /// Number of examples kept; the oldest go first. 0 disables the bank.
  /// Default: 0.
  TORCH_ARG(int64_t, capacity);
  /// The type rows are stored in (enqueued rows are converted); none: the
  /// first enqueued tensor's. Default: none.
  TORCH_ARG(c10::optional<c10::ScalarType>, dtype) = c10::nullopt;
};

/// A fixed-capacity FIFO of detached representations,
/// `[capacity, entries_per_row, dim]` (1 entry per row for queries, an
/// example's 1 + h passages for passages).
///
/// Storage is one preallocated ring buffer, created on the first `enqueue`
/// with that tensor's device, dtype, entries per row and dim; `enqueue` writes in place
/// and never reallocates or concatenates. The valid rows always form the
/// prefix `[0, size())` of the storage (the buffer only wraps once full), so
/// `view()` hands the bank to a matrix product without a copy. Row order in
/// `view()` is storage order; `ordered()` gives oldest-to-newest.
///
/// Each row also carries an integer tag given at `enqueue` (the strategy
/// writes the number of steps done before the row was encoded, from which
/// the row's age follows), and optionally a list of int64 identities (the
/// strategy writes each banked passage vector's passage identity, or each
/// banked query's positives, for masking false negatives), kept, undone,
/// saved and restored with it.
class MemoryBank {
 public:
  explicit MemoryBank(MemoryBankOptions options = {});

  /// Appends `reps` (`[n, entries, dim]`, or `[n, dim]` for 1 entry), detached
  /// and copied. When the bank overflows the oldest rows are dropped; when
  /// `n > capacity` only the newest `capacity` rows of `reps` are kept.
  /// Throws when entries per row, dim, dtype or device differ from what it holds.
  /// Every written row gets `tag`, and row `i` the identities `ids[i]`
  /// (`ids`: `[n, k]` or `[n]` int64, any device; undefined: none, stored as
  /// -1). Rows of fewer identities than the bank holds are padded with -1;
  /// more widen every row's list (padding the others).
  void enqueue(const torch::Tensor& reps, int64_t tag = -1, const torch::Tensor& ids = {});
  /// The storage slot row `row` of the next `enqueue` of `count` rows goes
  /// to, or -1 when that row is dropped (`count > capacity`).
  int64_t slot_for(int64_t count, int64_t row) const;
  /// The tag of each valid row, in storage order (-1: none given, or read
  /// from a checkpoint written before tags were saved).
  const std::vector<int64_t>& tags() const { return tags_; }

  /// `[size(), k]` int64 on the CPU, storage order: each valid row's
  /// identities (-1: none). Undefined while no identity was ever enqueued.
  torch::Tensor ids() const;

  /// The valid rows `[size(), entries_per_row, dim]` in storage order (a view; an
  /// undefined tensor while the bank has never been filled).
  torch::Tensor view() const;
  /// The valid rows oldest first (a copy).
  torch::Tensor ordered() const;

  /// Drops every row; keeps the storage.
  void clear();
  /// What undoing the next `count` enqueued rows needs: the write position,
  /// the size and a copy of the rows those writes will overwrite (at most
  /// `min(count, capacity)` rows, not the whole bank).
  struct Undo {
    int64_t head = 0, size = 0;
    /// The slots the writes overwrite: `count` slots from `head`, wrapping
    /// at the capacity (one or two runs of storage).
    int64_t count = 0;
    torch::Tensor rows;                             // their old contents, [count, entries_per_row, dim]
    torch::Tensor ids;                              // their old identities (CPU), when the bank holds any
    std::vector<std::pair<int64_t, int64_t>> tags;  // (slot, old tag) of the valid slots among them
  };
  Undo undo_for(int64_t count) const;
  /// The same into `record`, reusing its buffers when they have the sizes
  /// this record needs: a trainer taking one record a step (`Strategy`)
  /// then allocates nothing for it once the bank is full. The buffers are
  /// written in place, so a copy kept of an earlier record changes too.
  void undo_for(int64_t count, Undo& record) const;
  /// Puts the bank back as it was when `undo_for` was called, provided at
  /// most `count` rows were enqueued since (and no `load`).
  void undo(const Undo& undo);

  int64_t size() const { return size_; }
  int64_t capacity() const { return options_.capacity(); }
  bool empty() const { return size_ == 0; }
  bool full() const { return size_ == capacity(); }
  /// `size() / capacity()`, 0 for a disabled bank.
  double fill() const { return capacity() == 0 ? 0.0 : static_cast<double>(size_) / capacity(); }
  /// Storage row the next enqueued row goes to.
  int64_t head() const { return head_; }
  /// Entries per row (1 + h for passages); 0 before the first enqueue.
  int64_t entries_per_row() const { return storage_.defined() ? storage_.size(1) : 0; }
  /// Width of the stored vectors; 0 before the first enqueue.
  int64_t dim() const { return storage_.defined() ? storage_.size(2) : 0; }

  /// Writes capacity, size, write position and the valid rows and their tags
  /// in storage order into `archive`.
  void save(torch::serialize::OutputArchive& archive) const;
  /// Restores what `save` wrote, every row in the slot it had, so that a
  /// restored bank is bit for bit the saved one (also in `view()` order).
  /// The storage is allocated on `device` (the model's: a bank restored
  /// before its first enqueue has no storage to take the device from). The
  /// capacity must match this bank's; reads older checkpoints' oldest-first
  /// `contents` too.
  void load(torch::serialize::InputArchive& archive, const torch::Device& device = torch::kCPU);

 private:
  MemoryBankOptions options_;
  torch::Tensor storage_;  // [capacity, entries_per_row, dim]
  int64_t size_ = 0;
  int64_t head_ = 0;
  std::vector<int64_t> tags_;  // [size()], storage order
  torch::Tensor ids_;          // [capacity, k] int64 on the CPU; undefined until identities are enqueued
  void write_ids(const torch::Tensor& ids, int64_t n, int64_t dropped);
};

}  // namespace contaccum
