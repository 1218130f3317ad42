#include "contaccum/eval/hybrid_eval.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <iterator>

namespace contaccum {
namespace {

// Rows `subset` (a subset of `all`, both ascending) of a ranking whose row r
// belongs to query row all[r]; throws when a query of `subset` was not
// ranked.
SearchResult select_queries(const EvalResult& ranked, const std::vector<int64_t>& subset, const char* which) {
  const auto& all = ranked.query_rows;
  std::vector<int64_t> picks;
  for (const auto q : subset) {
    const auto it = std::lower_bound(all.begin(), all.end(), q);
    TORCH_CHECK(it != all.end() && *it == q, "evaluate_hybrid: the ", which, " ranking has no row for query row ", q,
                " (rank the queries of both qrels in one search)");
    picks.push_back(it - all.begin());
  }
  const auto index = torch::tensor(picks, torch::kLong);
  return {ranked.ranking.scores.index_select(0, index), ranked.ranking.indices.index_select(0, index)};
}

}  // namespace

HybridEvalResult evaluate_hybrid(const EvalResult& dense, const EvalResult& bm25, const std::vector<Qrel>& qrels,
                                 const std::vector<Qrel>& tune_qrels, FusionOptions fusion,
                                 const MetricsOptions& metrics) {
  HybridEvalResult out;
  const auto rows = judged_queries(qrels);
  TORCH_CHECK(!rows.empty(), "evaluate_hybrid: no judged query in the reported qrels");
  if (!tune_qrels.empty()) {
    const auto tune_rows = judged_queries(tune_qrels);
    std::vector<int64_t> shared;
    std::set_intersection(tune_rows.begin(), tune_rows.end(), rows.begin(), rows.end(), std::back_inserter(shared));
    TORCH_CHECK(shared.empty(), "evaluate_hybrid: the tuning qrels share ", shared.size(),
                " judged queries with the reported ones; tune on queries that are not reported");
    fusion.weight(tune_fusion_weight(select_queries(dense, tune_rows, "dense"), select_queries(bm25, tune_rows, "BM25"),
                                     tune_rows, tune_qrels, fusion, "mrr@10", metrics));
    out.tuned = true;
  }
  const auto dense_rows = select_queries(dense, rows, "dense");
  const auto bm25_rows = select_queries(bm25, rows, "BM25");
  out.weight = fusion.weight();
  out.fused.ranking = fuse_rankings(dense_rows, bm25_rows, fusion);
  out.fused.query_rows = rows;
  out.fused.metrics = compute_metrics(out.fused.ranking, rows, qrels, metrics);
  out.dense = compute_metrics(dense_rows, rows, qrels, metrics);
  out.bm25 = compute_metrics(bm25_rows, rows, qrels, metrics);
  return out;
}

}  // namespace contaccum
