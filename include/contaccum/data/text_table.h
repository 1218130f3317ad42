#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace contaccum {

/// Append-only storage for many strings: large blocks, no per-string
/// allocation, and views that stay valid for the arena's lifetime (unlike
/// `std::string` in a growing vector, whose short strings move).
class StringArena {
 public:
  /// Bytes per block; a longer string gets a block of its own.
  explicit StringArena(size_t block_bytes = size_t{1} << 20) : block_bytes_(block_bytes) {}
  StringArena(StringArena&&) = default;
  StringArena& operator=(StringArena&&) = default;

  /// Copies `s` into the arena; the returned view lives as long as the arena.
  std::string_view add(std::string_view s);
  /// Bytes of string data held.
  size_t bytes() const { return bytes_; }

 private:
  size_t block_bytes_;
  std::vector<std::unique_ptr<char[]>> blocks_;
  size_t used_ = 0;      // bytes used in the last block
  size_t capacity_ = 0;  // size of the last block
  size_t bytes_ = 0;
};

/// A table of texts with unique string ids: a BEIR corpus or query set, or the
/// texts of a DPR/TSV training file. Row `i` has `id(i)`, `title(i)`,
/// `text(i)`; `find(id)` maps an id back to its row.
class TextTable {
 public:
  TextTable() = default;
  TextTable(TextTable&&) = default;
  TextTable& operator=(TextTable&&) = default;

  /// Appends a row and returns its index, or -1 when `id` is already present
  /// (the table is unchanged then). An empty `id` gets the row number as id.
  int64_t add(std::string_view id, std::string_view title, std::string_view text);

  int64_t size() const { return static_cast<int64_t>(texts_.size()); }
  bool empty() const { return texts_.empty(); }
  std::string_view id(int64_t row) const { return ids_.at(static_cast<size_t>(row)); }
  std::string_view title(int64_t row) const { return titles_.at(static_cast<size_t>(row)); }
  std::string_view text(int64_t row) const { return texts_.at(static_cast<size_t>(row)); }
  /// Title and text joined by a space (just the text when the title is
  /// empty): what the passage tower reads.
  std::string full_text(int64_t row) const;
  /// Row of `id`, or -1.
  int64_t find(std::string_view id) const;
  /// Bytes of string data held.
  size_t bytes() const { return arena_.bytes(); }

 private:
  StringArena arena_;
  std::vector<std::string_view> ids_, titles_, texts_;
  std::unordered_map<std::string_view, int64_t> index_;
};

}  // namespace contaccum
