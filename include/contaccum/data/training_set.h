#pragma once

#include "contaccum/data/text_table.h"

#include <c10/util/ArrayRef.h>

#include <memory>
#include <unordered_map>
#include <vector>

namespace contaccum {

/// Training examples as rows of two text tables: example `i` is query row
/// `query(i)`, its positive passage rows, its hard negative rows (mined, e.g.
/// BM25) and its other negative rows (DPR's `negative_ctxs`). Lists are
/// stored flat (one vector per kind plus offsets), so millions of examples
/// cost a few integers each.
///
/// Passages have identities for masking false negatives:
/// `passage_identity(row)` is the first row of the passage table with the
/// same title and text, so identical texts under different ids are one
/// passage (computed at construction: one hash of every passage's text and 8
/// bytes per passage). A query's `relevant` passages are the positives of
/// every example of that query plus any added with `add_relevant` (e.g. from
/// the training qrels).
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

  /// Marks `passages` (passage rows) relevant to query row `query` besides
  /// the positives of its examples (e.g. every relevant passage of the
  /// training qrels when examples come from a hard-negatives file).
  void add_relevant(int64_t query, c10::ArrayRef<int64_t> passages);
  /// Every passage row relevant to example `i`'s query: its positives, then
  /// the other examples' of that query and those added with `add_relevant`,
  /// each once.
  std::vector<int64_t> relevant(int64_t i) const;
  /// The identity of passage row `row`: the first row with the same title
  /// and text.
  int64_t passage_identity(int64_t row) const { return identity_.at(static_cast<size_t>(row)); }

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
  std::vector<int64_t> identity_;  // per passage row
  // Query row -> passage rows relevant to it: every example's positives of
  // that query, and those added with add_relevant.
  std::unordered_map<int64_t, std::vector<int64_t>> relevant_;
  std::vector<int64_t> first_example_;  // per query row, -1: none yet
};

}  // namespace contaccum
