#pragma once

#include "contaccum/data/readers.h"
#include "contaccum/eval/metrics.h"
#include "contaccum/eval/search.h"

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// How `fuse_rankings` combines a dense and a BM25 ranking.
enum class FusionMethod {
  /// Reciprocal-rank fusion: `w / (c + rank_dense) + (1 - w) / (c + rank_bm25)`
  /// (ranks from 1; a list a document is missing from adds nothing).
  Rrf,
  /// Convex combination of min-max normalised scores: `w * dense' + (1 - w) *
  /// bm25'`, each list's scores mapped to [0, 1] per query (all equal: 1); a
  /// document missing from a list gets 0 from it.
  Linear,
};

/// Options of `fuse_rankings`.
struct FusionOptions {
  /// Default: `FusionMethod::Rrf`.
  TORCH_ARG(FusionMethod, method) = FusionMethod::Rrf;
  /// Weight of the dense ranking, in [0, 1]; BM25 gets `1 - weight`.
  /// Default: 0.5 (plain RRF, up to a factor).
  TORCH_ARG(double, weight) = 0.5;
  /// RRF's constant `c`. Must be >= 0. Default: 60 (Cormack et al. 2009).
  TORCH_ARG(double, rrf_constant) = 60.0;
  /// Results kept per query. Must be > 0. Default: 100.
  TORCH_ARG(int64_t, k) = 100;

 public:
  /// Throws naming the option and its value when one is out of range.
  void validate() const;
};

/// "rrf" / "linear"; throws naming the value otherwise.
FusionMethod fusion_method(const std::string& name);

/// Per query (row `r` of both), the union of the two rankings' documents
/// ordered by fused score, best first, ties towards the lower corpus row;
/// `min(k, |union|)` kept, rows padded with index -1 and score -inf where a
/// query has fewer. BM25 entries scoring <= 0 (no query term in the document)
/// count as absent, so a query without any BM25 match is ranked by the dense
/// list alone. Scores are float64.
SearchResult fuse_rankings(const SearchResult& dense, const SearchResult& bm25, const FusionOptions& options = {});

/// The dense weight in {0, 0.05, ..., 1} whose fusion scores best on
/// `metric` (ties: the lowest weight) for the judged queries `query_rows`
/// (the rows of both rankings) under `qrels`: a function of these rankings
/// and qrels only, so tune on a split other than the one you report.
double tune_fusion_weight(const SearchResult& dense, const SearchResult& bm25, const std::vector<int64_t>& query_rows,
                          const std::vector<Qrel>& qrels, FusionOptions options, const std::string& metric = "mrr@10",
                          const MetricsOptions& metrics = {});

}  // namespace contaccum
