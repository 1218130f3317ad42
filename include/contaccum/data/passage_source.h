#pragma once

#include "contaccum/data/text_table.h"

#include <cstdint>
#include <functional>

namespace contaccum {

/// Called with a block of consecutive passages: corpus row `first_row + i` is
/// row `i` of `block`.
using PassageBlockFn = std::function<void(int64_t first_row, const TextTable& block)>;

/// A corpus read a block of passages at a time, in row order: what encoding
/// and exact search of a corpus need, without holding it. Implemented by
/// `TablePassages` (a corpus in memory) and `CorpusStream` (a corpus file).
class PassageSource {
 public:
  virtual ~PassageSource() = default;
  /// Passages in the corpus.
  virtual int64_t size() const = 0;
  /// Calls `fn` with rows `[begin, end)` (within `[0, size())`), at most
  /// `block_rows` at a time, in order.
  virtual void for_each_block(int64_t begin, int64_t end, int64_t block_rows, const PassageBlockFn& fn) const = 0;
};

/// The passages of a `TextTable` (copied into each block; the table must
/// outlive this view).
class TablePassages : public PassageSource {
 public:
  explicit TablePassages(const TextTable& table) : table_(table) {}
  int64_t size() const override { return table_.size(); }
  void for_each_block(int64_t begin, int64_t end, int64_t block_rows, const PassageBlockFn& fn) const override;

 private:
  const TextTable& table_;
};

}  // namespace contaccum
