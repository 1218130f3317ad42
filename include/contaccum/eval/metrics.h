#pragma once

#include "contaccum/data/readers.h"
#include "contaccum/data/text_table.h"
#include "contaccum/eval/search.h"

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace contaccum {

/// Which metrics `compute_metrics` reports, and their cut-offs.
struct MetricsOptions {
  /// Cut-offs of Top@k (DPR's top-k accuracy). Default: {1, 5, 20, 100}.
  TORCH_ARG(std::vector<int64_t>, top_k) = std::vector<int64_t>{1, 5, 20, 100};
  /// Cut-offs of Recall@k. Default: {20, 100}.
  TORCH_ARG(std::vector<int64_t>, recall_k) = std::vector<int64_t>{20, 100};
  /// Cut-off of MRR@k. Default: 10.
  TORCH_ARG(int64_t, mrr_k) = 10;
  /// Cut-off of nDCG@k. Default: 10.
  TORCH_ARG(int64_t, ndcg_k) = 10;
  /// Cut-off of MAP@k. Default: 100.
  TORCH_ARG(int64_t, map_k) = 100;
};

/// Retrieval metrics averaged over the evaluated queries.
struct RetrievalMetrics {
  /// Queries evaluated: those with at least one judgement of score > 0.
  int64_t queries = 0;
  /// Name and value of each metric, in a fixed order: every "top@k", every
  /// "recall@k", then "mrr@k", "ndcg@k", "map@k".
  std::vector<std::pair<std::string, double>> values;

  /// Value of metric `name`; throws naming it (and the ones present) when
  /// absent.
  double at(const std::string& name) const;
  /// One JSON object: `{"queries": N, "top@1": ..., ...}` in `values` order.
  std::string to_json() const;
};

/// Scores the ranking `ranking.indices` (row `r`: ranked corpus rows for
/// query row `query_rows[r]` of the queries table) against `qrels` (as
/// `read_qrels` returns them). Passages with a judgement of score > 0 are
/// relevant. Per query, then averaged:
/// - Top@k: 1 when any relevant passage is among the first k (DPR's accuracy);
/// - Recall@k: relevant passages among the first k / relevant passages;
/// - MRR@k: 1 / rank of the first relevant passage within the first k;
/// - nDCG@k: trec_eval's `ndcg_cut`: gain = qrel score, discount
///   log2(rank + 1), ideal DCG from all relevant passages of the query;
/// - MAP@k: trec_eval's `map_cut`: sum of precision@rank over the relevant
///   passages within the first k, divided by the number of relevant passages.
/// Queries without a relevant passage are left out; at least one query must
/// be evaluated. A pair judged twice keeps its higher score.
RetrievalMetrics compute_metrics(const SearchResult& ranking, const std::vector<int64_t>& query_rows,
                                 const std::vector<Qrel>& qrels, const MetricsOptions& options = {});

/// The query rows with at least one judgement of score > 0, ascending.
std::vector<int64_t> judged_queries(const std::vector<Qrel>& qrels);

/// The judgements of the first `max_queries` judged queries (by row, as
/// `judged_queries` orders them); all of `qrels` when `max_queries` is 0 or
/// at least the number of judged queries. For quick evaluations on a subset.
std::vector<Qrel> first_judged_queries(const std::vector<Qrel>& qrels, int64_t max_queries);

/// Writes `ranking` as a TREC run file, one line per result:
/// `query-id Q0 corpus-id rank score run_name` (rank from 1). The file is
/// written to a temporary file in the same directory and renamed over `path`,
/// so readers never see a partial run. Index -1 (the padding of a query
/// with fewer results, as in fused rankings) ends that query's lines.
/// Throws naming `path` on failure.
void write_trec_run(const std::string& path, const SearchResult& ranking, const std::vector<int64_t>& query_rows,
                    const TextTable& queries, const TextTable& corpus, const std::string& run_name = "contaccum");

/// `write_trec_run` with the corpus ids read from its file (one scan, for
/// the ranked rows only).
void write_trec_run(const std::string& path, const SearchResult& ranking, const std::vector<int64_t>& query_rows,
                    const TextTable& queries, const CorpusStream& corpus, const std::string& run_name = "contaccum");

}  // namespace contaccum
