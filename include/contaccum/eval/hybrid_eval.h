#pragma once

#include "contaccum/data/readers.h"
#include "contaccum/eval/evaluate.h"
#include "contaccum/eval/fusion.h"
#include "contaccum/eval/metrics.h"

#include <vector>

namespace contaccum {

/// What `evaluate_hybrid` reports, all over the judged queries of the
/// reported qrels.
struct HybridEvalResult {
  /// The fused ranking and its metrics.
  EvalResult fused;
  /// The dense and the BM25 ranking's metrics over the same queries.
  RetrievalMetrics dense;
  RetrievalMetrics bm25;
  /// The dense weight used: `FusionOptions::weight`, or the one tuned.
  double weight = 0.5;
  /// Whether `weight` was tuned (on `tune_qrels`).
  bool tuned = false;
};

/// The hybrid evaluation job (`contaccum eval --hybrid-bm25`): `dense` and
/// `bm25` rank the judged queries of `qrels` and of `tune_qrels` together
/// (one search each: `evaluate_dense` / `evaluate_bm25` over both splits'
/// judgements). With `tune_qrels` non-empty the dense weight is the one
/// `tune_fusion_weight` chooses on them, never on `qrels`; the two must share
/// no judged query (throws naming how many). Returns the fusion of the
/// `qrels` queries' rankings with its metrics, beside the dense and BM25
/// metrics of the same queries.
HybridEvalResult evaluate_hybrid(const EvalResult& dense, const EvalResult& bm25, const std::vector<Qrel>& qrels,
                                 const std::vector<Qrel>& tune_qrels, FusionOptions fusion,
                                 const MetricsOptions& metrics = {});

}  // namespace contaccum
