#pragma once

#include "contaccum/data/text_table.h"
#include "contaccum/eval/search.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// Options of `BM25Index`.
struct BM25Options {
  /// Term-frequency saturation. Default: 0.9.
  TORCH_ARG(double, k1) = 0.9;
  /// Length normalisation, in [0, 1]. Default: 0.4.
  TORCH_ARG(double, b) = 0.4;
  /// Show the index build's progress on stderr (passages read). Default:
  /// false.
  TORCH_ARG(bool, progress) = false;
};

/// An exact BM25 index over a corpus, scoring as the `debpkg` data set's
/// `build.py` does, bit for bit: the sum over the distinct query terms `t` of
/// `idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`, with
/// `idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))` and `dl` counted after
/// stop-word removal, in float64, terms added in lexicographic order.
///
/// Postings are one compressed-row array (term-major, passages ascending)
/// holding each posting's precomputed float64 term score, so a query costs one
/// pass over its terms' postings plus a scan of the 64-row blocks they reach.
class BM25Index {
 public:
  /// Indexes `corpus.full_text(i)` for every row.
  explicit BM25Index(const TextTable& corpus, BM25Options options = {});

  /// The `k' = min(k, size())` best corpus rows of each query, best first,
  /// ties (including rows scoring 0) broken towards the lower row; scores are
  /// float64. Queries are scored in parallel (`at::parallel_for`).
  SearchResult search(const std::vector<std::string>& queries, int64_t k) const;

  /// BM25 score of every corpus row for `query`, `[size()]` float64.
  torch::Tensor score_all(std::string_view query) const;

  /// Python's `[w for w in re.findall("[a-z0-9]+", text.lower()) if w not in
  /// STOP]` on UTF-8 text: lowercased maximal runs of ASCII letters and
  /// digits, minus build.py's stop words "a an and are as at be by for from in
  /// is it of on or that the this to with" (21, though its README says 22).
  /// The only non-ASCII characters whose lowercase is ASCII, U+0130 and
  /// U+212A, become "i" and "k" as in Python.
  static std::vector<std::string> tokenize(std::string_view text);

  /// Corpus rows indexed.
  int64_t size() const { return static_cast<int64_t>(lengths_.size()); }
  /// Distinct terms (stop words excluded).
  int64_t vocabulary_size() const { return static_cast<int64_t>(terms_.size()) - stop_words_; }
  /// Postings: (term, passage) pairs.
  int64_t postings() const { return static_cast<int64_t>(docs_.size()); }
  /// Mean passage length in tokens, stop words excluded.
  double average_length() const { return average_length_; }
  const BM25Options& options() const { return options_; }

 private:
  // Distinct known term ids of `query`, ordered by term text (the order of
  // Python's `sorted(set(words))`, which fixes the float64 summation order).
  std::vector<int32_t> query_terms(std::string_view query) const;
  // Id of `word` (hash `hash`), or -1.
  int32_t find_term(std::string_view word, uint64_t hash) const;
  // Id of `word`, added when new.
  int32_t intern(std::string_view word);

  BM25Options options_;
  StringArena arena_;
  // Terms by id; ids below stop_words_ are the stop words (no postings), so
  // one lookup per word both finds and filters it.
  std::vector<std::string_view> terms_;
  std::vector<uint64_t> hashes_;
  int64_t stop_words_ = 0;
  // Open addressing, linear probing, -1 for an empty slot: several times
  // faster than std::unordered_map on the millions of lookups of indexing.
  std::vector<int32_t> slots_;
  std::vector<int64_t> offsets_;  // [terms + 1] into docs_/impacts_
  std::vector<int32_t> docs_;
  std::vector<double> impacts_;
  std::vector<int32_t> lengths_;
  double average_length_ = 0;
};

}  // namespace contaccum
