#pragma once

#include <torch/types.h>

namespace contaccum {

/// The entries of a score block that are false negatives: row `i`'s score
/// against column `j` when column `j`'s passage identity is one of row `i`'s
/// positives, other than row `i`'s own target column. Such an entry is set to
/// `-inf` before any log-sum-exp, so it is not a negative and gets no
/// gradient.
///
/// Identities are int64 (the data pipeline uses the corpus row of the first
/// passage with the same text; `-1` is "unknown" and never matches). Kept as
/// the list of masked `(row, column)` pairs, sorted by row then column:
/// collisions are rare, so a mask costs a few integers, and it is built from a
/// lookup table of the rows' positives, in `O(rows * positives + columns)`
/// without comparing every row with every column.
class IdentityMask {
 public:
  IdentityMask() = default;
  /// The mask of rows with positives `row_positives` (`[r, P]` int64, `-1`
  /// padding) against columns with identities `column_ids` (`[c]` int64, or
  /// any shape, read flat). Row `i`'s target column, `i * target_stride +
  /// target_offset` when `target_stride > 0` (the current queries: their
  /// positive; a banked query against the passage bank: its banked
  /// positive), is never masked; with `target_stride == 0` no column is a
  /// target. Both tensors are read on the CPU.
  static IdentityMask of(const torch::Tensor& row_positives, const torch::Tensor& column_ids, int64_t target_stride = 0,
                         int64_t target_offset = 0);

  /// A mask of the given pairs (`[k]` int64 each, on the CPU), which must be
  /// sorted by row then column (as `rows()` and `columns()` are).
  static IdentityMask from_pairs(torch::Tensor rows, torch::Tensor columns);

  /// Masked entries.
  int64_t size() const { return rows_.defined() ? rows_.numel() : 0; }
  bool empty() const { return size() == 0; }
  /// `[size()]` int64 (CPU): row and column of each masked entry.
  const torch::Tensor& rows() const { return rows_; }
  const torch::Tensor& columns() const { return columns_; }

  /// Sets to `-inf` the masked entries that fall inside `block`, which holds
  /// rows `[row0, row0 + block.size(0))` and columns `[column0, column0 +
  /// block.size(1))` of the masked matrix (in place; a tile of a larger
  /// block). With `transposed`, `block` is laid out `[columns, rows]`.
  void apply(torch::Tensor& block, int64_t row0 = 0, int64_t column0 = 0, bool transposed = false) const;

 private:
  torch::Tensor rows_, columns_;
};

}  // namespace contaccum
