#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace contaccum {

/// Options of `exact_search`.
struct SearchOptions {
  /// Results per query. Default: 100.
  TORCH_ARG(int64_t, k) = 100;
  /// Queries scored at once. Default: 1024.
  TORCH_ARG(int64_t, query_block) = 1024;
  /// Corpus rows scored at once. Default: 65536.
  TORCH_ARG(int64_t, corpus_block) = 65536;
};

/// A ranking: row `r` holds the best corpus rows for query `r`, best first.
struct SearchResult {
  /// `[Q, k']` scores, best first (float64 for BM25 and float64 inputs,
  /// float32 otherwise).
  torch::Tensor scores;
  /// `[Q, k']` int64 corpus rows.
  torch::Tensor indices;
};

/// Exact maximum inner product search of `queries` `[Q, dim]` against
/// `corpus` `[N, dim]`: `k' = min(k, N)` results per query, ties broken
/// towards the lower corpus row (deterministic on every device).
///
/// Scores come from blocked matrix products whose per-block top-k are merged,
/// so memory stays `O(query_block * (corpus_block + k))` and a `[Q, N]` score
/// matrix never exists. Computation happens on the device of `queries`
/// (corpus blocks are moved there one at a time, so a CPU corpus can be
/// searched on a GPU); the result is on the CPU.
SearchResult exact_search(const torch::Tensor& queries, const torch::Tensor& corpus, const SearchOptions& options = {});

/// Exact search over a corpus that arrives a block at a time (encoded on the
/// fly, read from an embeddings file, or a shard of a rank): keeps only each
/// query's running top `k`, so memory is `O(Q k + block)` whatever the corpus
/// size. `exact_search` is this over the corpus's blocks; feeding the same
/// blocks gives bit-identical results.
class TopKAccumulator {
 public:
  /// `queries` `[Q, dim]`; scoring happens on their device.
  TopKAccumulator(torch::Tensor queries, SearchOptions options = {});
  /// Scores the next corpus rows `block` `[b, dim]`, which are rows
  /// `[first_row, first_row + b)` of the corpus (default: right after the
  /// rows added so far).
  void add(const torch::Tensor& block, int64_t first_row = -1);
  /// Merges another accumulator's ranking (e.g. another rank's shard, with
  /// global row numbers) into this one.
  void merge(const SearchResult& other);
  /// The ranking so far: `min(k, rows)` results per query, best first, ties
  /// towards the lower row.
  SearchResult result() const;
  /// Corpus rows added.
  int64_t rows() const { return rows_; }

 private:
  torch::Tensor queries_;
  SearchOptions options_;
  torch::ScalarType dtype_;
  torch::Tensor best_values_, best_rows_;  // [Q, <= k], on the CPU
  int64_t rows_ = 0, next_row_ = 0;
};

}  // namespace contaccum
