#include "contaccum/eval/fusion.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

namespace contaccum {

void FusionOptions::validate() const {
  TORCH_CHECK(weight() >= 0.0 && weight() <= 1.0, "fusion weight must be in [0, 1], got ", weight());
  TORCH_CHECK(rrf_constant() >= 0.0 && std::isfinite(rrf_constant()), "FusionOptions::rrf_constant must be >= 0, got ",
              rrf_constant());
  TORCH_CHECK(k() > 0, "FusionOptions::k must be > 0, got ", k());
}

FusionMethod fusion_method(const std::string& name) {
  if (name == "rrf") return FusionMethod::Rrf;
  if (name == "linear") return FusionMethod::Linear;
  TORCH_CHECK(false, "--fusion must be rrf or linear, got '", name, "'");
}

namespace {

// A ranking as `entries` reads it, by address: on the CPU, int64 rows and
// float64 scores, each row contiguous (a ranking may come from a GPU, or be
// a transposed view). One copy per ranking, not per query.
SearchResult on_cpu(const SearchResult& r) {
  return {r.scores.to(torch::kCPU, torch::kDouble).contiguous(), r.indices.to(torch::kCPU, torch::kLong).contiguous()};
}

// One query's list: (corpus row, score), best first; BM25 non-matches dropped.
std::vector<std::pair<int64_t, double>> entries(const SearchResult& r, int64_t query, bool drop_non_positive) {
  std::vector<std::pair<int64_t, double>> out;
  const auto indices = r.indices[query];  // on the CPU, rows contiguous (on_cpu)
  const auto scores = r.scores[query];
  const auto* idx = indices.data_ptr<int64_t>();
  const auto* val = scores.data_ptr<double>();
  for (int64_t j = 0; j < indices.numel(); ++j) {
    if (idx[j] < 0 || !std::isfinite(val[j])) continue;
    if (drop_non_positive && val[j] <= 0.0) continue;
    out.emplace_back(idx[j], val[j]);
  }
  return out;
}

// Each entry's contribution: RRF's reciprocal rank or the min-max score.
void contribute(const std::vector<std::pair<int64_t, double>>& list, double weight, const FusionOptions& o,
                std::map<int64_t, double>& fused) {
  if (list.empty()) return;
  double low = list.front().second, high = low;
  for (const auto& e : list) low = std::min(low, e.second), high = std::max(high, e.second);
  for (size_t rank = 0; rank < list.size(); ++rank) {
    double part = 0.0;
    if (o.method() == FusionMethod::Rrf) {
      part = 1.0 / (o.rrf_constant() + static_cast<double>(rank + 1));
    } else {
      part = high > low ? (list[rank].second - low) / (high - low) : 1.0;
    }
    fused[list[rank].first] += weight * part;
  }
}

}  // namespace

SearchResult fuse_rankings(const SearchResult& dense, const SearchResult& bm25, const FusionOptions& options) {
  options.validate();
  TORCH_CHECK(dense.indices.defined() && bm25.indices.defined() && dense.indices.dim() == 2 && bm25.indices.dim() == 2,
              "fuse_rankings: both rankings must be [queries, k]");
  TORCH_CHECK(dense.indices.size(0) == bm25.indices.size(0), "fuse_rankings: the dense ranking has ",
              dense.indices.size(0), " queries, the BM25 one ", bm25.indices.size(0));
  const int64_t queries = dense.indices.size(0);
  const auto dense_rows = on_cpu(dense), bm25_rows = on_cpu(bm25);
  std::vector<std::vector<std::pair<int64_t, double>>> ranked(static_cast<size_t>(queries));
  int64_t width = 0;
  for (int64_t q = 0; q < queries; ++q) {
    std::map<int64_t, double> fused;  // by corpus row
    // Both lists enter every candidate, so a document in one list only
    // still gets its 0 from the other.
    contribute(entries(dense_rows, q, false), options.weight(), options, fused);
    contribute(entries(bm25_rows, q, true), 1.0 - options.weight(), options, fused);
    auto& list = ranked[static_cast<size_t>(q)];
    list.assign(fused.begin(), fused.end());
    std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    if (static_cast<int64_t>(list.size()) > options.k()) list.resize(static_cast<size_t>(options.k()));
    width = std::max<int64_t>(width, static_cast<int64_t>(list.size()));
  }
  SearchResult out;
  out.scores = torch::full({queries, width}, -std::numeric_limits<double>::infinity(), torch::kDouble);
  out.indices = torch::full({queries, width}, int64_t{-1}, torch::kLong);
  auto scores = out.scores.accessor<double, 2>();
  auto indices = out.indices.accessor<int64_t, 2>();
  for (int64_t q = 0; q < queries; ++q) {
    const auto& list = ranked[static_cast<size_t>(q)];
    for (size_t j = 0; j < list.size(); ++j) {
      indices[q][static_cast<int64_t>(j)] = list[j].first;
      scores[q][static_cast<int64_t>(j)] = list[j].second;
    }
  }
  return out;
}

double tune_fusion_weight(const SearchResult& dense, const SearchResult& bm25, const std::vector<int64_t>& query_rows,
                          const std::vector<Qrel>& qrels, FusionOptions options, const std::string& metric,
                          const MetricsOptions& metrics) {
  double best_weight = 0.0, best = -std::numeric_limits<double>::infinity();
  for (int step = 0; step <= 20; ++step) {
    const double w = step / 20.0;
    options.weight(w);
    const double value = compute_metrics(fuse_rankings(dense, bm25, options), query_rows, qrels, metrics).at(metric);
    if (value > best) best = value, best_weight = w;
  }
  return best_weight;
}

}  // namespace contaccum
