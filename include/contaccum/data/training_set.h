#pragma once

#include "contaccum/data/text_table.h"

#include <c10/util/ArrayRef.h>

#include <memory>
#include <vector>

namespace contaccum {

/// Training examples as rows of two text tables: example `i` is query row
/// `query(i)`, its positive passage rows, its hard negative rows (mined, e.g.
/// BM25) and its other negative rows (DPR's `negative_ctxs`). Lists are
/// stored flat (one vector per kind plus offsets), so millions of examples
/// cost a few integers each.
class TrainingSet {
 public:
  TrainingSet(std::shared_ptr<const TextTable> queries, std::shared_ptr<const TextTable> passages);

  /// Appends an example. Throws when a row is outside its table or
  /// `positives` is empty.
  void add(int64_t query, c10::ArrayRef<int64_t> positives, c10::ArrayRef<int64_t> hard_negatives = {},
           c10::ArrayRef<int64_t> other_negatives = {});

  int64_t size() const { return static_cast<int64_t>(queries_of_.size()); }
  bool empty() const { return queries_of_.empty(); }
  int64_t query(int64_t i) const { return queries_of_.at(static_cast<size_t>(i)); }
  c10::ArrayRef<int64_t> positives(int64_t i) const { return list(positives_, i); }
  c10::ArrayRef<int64_t> hard_negatives(int64_t i) const { return list(hard_, i); }
  c10::ArrayRef<int64_t> other_negatives(int64_t i) const { return list(other_, i); }

  const TextTable& queries() const { return *queries_; }
  const TextTable& passages() const { return *passages_; }
  const std::shared_ptr<const TextTable>& query_table() const { return queries_; }
  const std::shared_ptr<const TextTable>& passage_table() const { return passages_; }

 private:
  struct Lists {
    std::vector<int64_t> offsets{0};
    std::vector<int64_t> rows;
  };
  static c10::ArrayRef<int64_t> list(const Lists& l, int64_t i);
  void check(c10::ArrayRef<int64_t> rows, const char* what) const;
  static void append(Lists& l, c10::ArrayRef<int64_t> rows);

  std::shared_ptr<const TextTable> queries_, passages_;
  std::vector<int64_t> queries_of_;
  Lists positives_, hard_, other_;
};

}  // namespace contaccum
