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

}  // namespace contaccum
