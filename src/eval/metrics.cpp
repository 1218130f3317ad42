#include "contaccum/eval/metrics.h"

#include "contaccum/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace contaccum {
namespace {

void check_cutoffs(const std::vector<int64_t>& cutoffs, const char* name) {
  for (const auto k : cutoffs) TORCH_CHECK(k > 0, "MetricsOptions::", name, " values must be > 0, got ", k);
}

void check_ranking(const SearchResult& ranking, const std::vector<int64_t>& query_rows, const char* fn) {
  const auto& idx = ranking.indices;
  TORCH_CHECK(idx.defined() && idx.dim() == 2 && idx.scalar_type() == torch::kLong, fn,
              ": ranking.indices must be [Q, k] int64, got ", idx.defined() ? idx.sizes() : torch::IntArrayRef{},
              idx.defined() ? " " : "", idx.defined() ? c10::toString(idx.scalar_type()) : "undefined");
  TORCH_CHECK(idx.size(0) == static_cast<int64_t>(query_rows.size()), fn, ": ranking has ", idx.size(0),
              " rows but query_rows has ", query_rows.size());
}

// A query's relevant passages (score > 0), sorted by passage row.
struct Judged {
  int64_t passage;
  double gain;
  bool operator<(const Judged& o) const { return passage < o.passage; }
};

}  // namespace

double RetrievalMetrics::at(const std::string& name) const {
  std::string have;
  for (const auto& kv : values) {
    if (kv.first == name) return kv.second;
    have += (have.empty() ? "" : ", ") + kv.first;
  }
  TORCH_CHECK(false, "RetrievalMetrics: no metric \"", name, "\" (have: ", have, ")");
}

std::string RetrievalMetrics::to_json() const {
  nlohmann::ordered_json j;
  j["queries"] = queries;
  for (const auto& kv : values) j[kv.first] = kv.second;
  return j.dump();
}

std::vector<int64_t> judged_queries(const std::vector<Qrel>& qrels) {
  std::vector<int64_t> rows;
  for (const auto& q : qrels) {
    if (q.score > 0) rows.push_back(q.query);
  }
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

std::vector<Qrel> first_judged_queries(const std::vector<Qrel>& qrels, int64_t max_queries) {
  TORCH_CHECK(max_queries >= 0, "first_judged_queries: max_queries must be >= 0, got ", max_queries);
  const auto judged = judged_queries(qrels);
  if (max_queries == 0 || static_cast<int64_t>(judged.size()) <= max_queries) return qrels;
  const int64_t last = judged[static_cast<size_t>(max_queries) - 1];
  std::vector<Qrel> kept;
  for (const auto& q : qrels) {
    if (q.query <= last) kept.push_back(q);
  }
  return kept;
}

namespace {

// Relevant passages grouped by query: sorted (query, passage) pairs, so each
// query's judgements are one contiguous, passage-ordered run; a pair judged
// twice keeps its higher score.
std::vector<std::pair<int64_t, Judged>> relevant_by_query(const std::vector<Qrel>& qrels) {
  std::vector<std::pair<int64_t, Judged>> relevant;
  for (size_t i = 0; i < qrels.size(); ++i) {
    const auto& q = qrels[i];
    TORCH_CHECK(q.query >= 0 && q.passage >= 0, "compute_metrics: qrels[", i, "] has a negative row (query ", q.query,
                ", passage ", q.passage, ")");
    if (q.score > 0) relevant.push_back({q.query, {q.passage, static_cast<double>(q.score)}});
  }
  std::sort(relevant.begin(), relevant.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first
                              : (a.second.passage != b.second.passage ? a.second.passage < b.second.passage
                                                                      : a.second.gain > b.second.gain);
  });
  relevant.erase(std::unique(relevant.begin(), relevant.end(),
                             [](const auto& a, const auto& b) {
                               return a.first == b.first && a.second.passage == b.second.passage;
                             }),
                 relevant.end());
  return relevant;
}

// (0-based rank, gain) of each relevant passage among the `width` ranked
// ones, in rank order; a passage listed twice counts once.
void find_hits(const int64_t* ranked, int64_t width, const std::vector<Judged>& rel, std::vector<char>& found,
               std::vector<std::pair<int64_t, double>>& hits) {
  found.assign(rel.size(), 0);
  hits.clear();
  for (int64_t j = 0; j < width; ++j) {
    const auto it = std::lower_bound(rel.begin(), rel.end(), Judged{ranked[j], 0.0});
    if (it == rel.end() || it->passage != ranked[j] || found[it - rel.begin()]) continue;
    found[it - rel.begin()] = 1;
    hits.emplace_back(j, it->gain);
  }
}

double ndcg_of(const std::vector<std::pair<int64_t, double>>& hits, const std::vector<Judged>& rel, int64_t k,
               std::vector<double>& ideal) {
  double dcg = 0, idcg = 0;
  for (const auto& h : hits) {
    if (h.first < k) dcg += h.second / std::log2(static_cast<double>(h.first + 2));
  }
  ideal.clear();
  for (const auto& j : rel) ideal.push_back(j.gain);
  std::sort(ideal.begin(), ideal.end(), std::greater<double>());
  for (size_t i = 0; i < ideal.size() && static_cast<int64_t>(i) < k; ++i) {
    idcg += ideal[i] / std::log2(static_cast<double>(i + 2));
  }
  return dcg / idcg;
}

double average_precision(const std::vector<std::pair<int64_t, double>>& hits, double num_rel, int64_t k) {
  double ap = 0;
  int64_t seen = 0;
  for (const auto& h : hits) {
    if (h.first >= k) break;
    ++seen;
    ap += static_cast<double>(seen) / static_cast<double>(h.first + 1);
  }
  return ap / num_rel;
}

// Per-query metrics summed over the evaluated queries.
struct MetricSums {
  explicit MetricSums(const MetricsOptions& o) : options(o), top(o.top_k().size()), recall(o.recall_k().size()) {}

  void add(const std::vector<std::pair<int64_t, double>>& hits, const std::vector<Judged>& rel) {
    ++evaluated;
    const auto num_rel = static_cast<double>(rel.size());
    for (size_t c = 0; c < top.size(); ++c) {
      top[c] += !hits.empty() && hits.front().first < options.top_k()[c] ? 1.0 : 0.0;
    }
    for (size_t c = 0; c < recall.size(); ++c) {
      int64_t n = 0;
      for (const auto& h : hits) n += h.first < options.recall_k()[c];
      recall[c] += static_cast<double>(n) / num_rel;
    }
    if (!hits.empty() && hits.front().first < options.mrr_k()) mrr += 1.0 / static_cast<double>(hits.front().first + 1);
    ndcg += ndcg_of(hits, rel, options.ndcg_k(), ideal);
    map += average_precision(hits, num_rel, options.map_k());
  }

  RetrievalMetrics means() const {
    RetrievalMetrics out;
    out.queries = evaluated;
    const auto n = static_cast<double>(evaluated);
    for (size_t c = 0; c < top.size(); ++c) {
      out.values.emplace_back("top@" + std::to_string(options.top_k()[c]), top[c] / n);
    }
    for (size_t c = 0; c < recall.size(); ++c) {
      out.values.emplace_back("recall@" + std::to_string(options.recall_k()[c]), recall[c] / n);
    }
    out.values.emplace_back("mrr@" + std::to_string(options.mrr_k()), mrr / n);
    out.values.emplace_back("ndcg@" + std::to_string(options.ndcg_k()), ndcg / n);
    out.values.emplace_back("map@" + std::to_string(options.map_k()), map / n);
    return out;
  }

  const MetricsOptions& options;
  std::vector<double> top, recall;
  double mrr = 0, ndcg = 0, map = 0;
  int64_t evaluated = 0;
  std::vector<double> ideal;  // scratch
};

}  // namespace

RetrievalMetrics compute_metrics(const SearchResult& ranking, const std::vector<int64_t>& query_rows,
                                 const std::vector<Qrel>& qrels, const MetricsOptions& options) {
  check_cutoffs(options.top_k(), "top_k");
  check_cutoffs(options.recall_k(), "recall_k");
  TORCH_CHECK(options.mrr_k() > 0, "MetricsOptions::mrr_k must be > 0, got ", options.mrr_k());
  TORCH_CHECK(options.ndcg_k() > 0, "MetricsOptions::ndcg_k must be > 0, got ", options.ndcg_k());
  TORCH_CHECK(options.map_k() > 0, "MetricsOptions::map_k must be > 0, got ", options.map_k());
  check_ranking(ranking, query_rows, "compute_metrics");
  for (size_t i = 0; i < query_rows.size(); ++i) {
    TORCH_CHECK(query_rows[i] >= 0, "compute_metrics: query_rows[", i, "] must be >= 0, got ", query_rows[i]);
  }
  const auto relevant = relevant_by_query(qrels);
  const auto indices = ranking.indices.cpu().contiguous();  // read by address below
  const int64_t width = indices.size(1);
  MetricSums sums(options);
  std::vector<Judged> rel;
  std::vector<char> found;
  std::vector<std::pair<int64_t, double>> hits;
  for (size_t r = 0; r < query_rows.size(); ++r) {
    const auto lo = std::lower_bound(relevant.begin(), relevant.end(), query_rows[r],
                                     [](const auto& a, int64_t q) { return a.first < q; });
    rel.clear();
    for (auto it = lo; it != relevant.end() && it->first == query_rows[r]; ++it) rel.push_back(it->second);
    if (rel.empty()) continue;
    find_hits(indices.data_ptr<int64_t>() + static_cast<int64_t>(r) * width, width, rel, found, hits);
    sums.add(hits, rel);
  }
  TORCH_CHECK(sums.evaluated > 0, "compute_metrics: none of the ", query_rows.size(),
              " query rows has a relevant passage (a qrel with score > 0)");
  return sums.means();
}

namespace {

// Shortest text that reads back as the same value, in the scores' own
// precision (a float widened to double would print spurious digits).
template <typename T>
void append_number(std::string& out, T value) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, res.ptr);
}

}  // namespace

void write_trec_run(const std::string& path, const SearchResult& ranking, const std::vector<int64_t>& query_rows,
                    const TextTable& queries, const TextTable& corpus, const std::string& run_name) {
  check_ranking(ranking, query_rows, "write_trec_run");
  const auto& scores = ranking.scores;
  TORCH_CHECK(scores.defined() && scores.sizes() == ranking.indices.sizes(),
              "write_trec_run: ranking.scores must have the shape of ranking.indices ", ranking.indices.sizes(),
              ", got ", scores.defined() ? scores.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(!run_name.empty() && std::none_of(run_name.begin(), run_name.end(),
                                                [](char c) { return std::isspace(static_cast<unsigned char>(c)); }),
              "write_trec_run: run_name must be non-empty without whitespace, got \"", run_name, "\"");
  for (size_t r = 0; r < query_rows.size(); ++r) {
    TORCH_CHECK(query_rows[r] >= 0 && query_rows[r] < queries.size(), "write_trec_run: query_rows[", r,
                "] = ", query_rows[r], " is out of range for a queries table of ", queries.size(), " rows");
  }
  const auto indices = ranking.indices.cpu().contiguous();  // read by address below
  if (indices.numel() > 0) {
    const auto lo = indices.min().item<int64_t>(), hi = indices.max().item<int64_t>();
    // -1 pads a query with fewer results (fused rankings); it is skipped.
    TORCH_CHECK(lo >= -1 && hi < corpus.size(), "write_trec_run: ranking.indices holds corpus row ", lo < -1 ? lo : hi,
                ", out of range for a corpus table of ", corpus.size(), " rows");
  }
  const bool as_double = scores.scalar_type() == torch::kDouble;
  const auto values = scores.to(torch::kCPU, as_double ? torch::kDouble : torch::kFloat).contiguous();

  std::string text;
  const int64_t width = indices.size(1);
  const int64_t* idx = indices.data_ptr<int64_t>();
  for (size_t r = 0; r < query_rows.size(); ++r) {
    const auto qid = queries.id(query_rows[r]);
    for (int64_t j = 0; j < width; ++j) {
      const int64_t at = static_cast<int64_t>(r) * width + j;
      if (idx[at] < 0) break;
      text.append(qid).append(" Q0 ").append(corpus.id(idx[at])).append(" ");
      append_number(text, j + 1);
      text.push_back(' ');
      if (as_double) {
        append_number(text, values.data_ptr<double>()[at]);
      } else {
        append_number(text, values.data_ptr<float>()[at]);
      }
      text.append(" ").append(run_name).push_back('\n');
    }
  }

  try {
    AtomicFile file(path);
    file.write(text);
    file.commit();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "write_trec_run: ", e.what_without_backtrace());
  }
}

void write_trec_run(const std::string& path, const SearchResult& ranking, const std::vector<int64_t>& query_rows,
                    const TextTable& queries, const CorpusStream& corpus, const std::string& run_name) {
  check_ranking(ranking, query_rows, "write_trec_run");
  // The ranked rows' ids, in a table of their own that the ranking is
  // renumbered into (-1 padding stays -1).
  const auto indices = ranking.indices.cpu().contiguous();
  std::vector<int64_t> ranked(indices.data_ptr<int64_t>(), indices.data_ptr<int64_t>() + indices.numel());
  ranked.erase(std::remove(ranked.begin(), ranked.end(), int64_t{-1}), ranked.end());
  std::sort(ranked.begin(), ranked.end());
  ranked.erase(std::unique(ranked.begin(), ranked.end()), ranked.end());
  TORCH_CHECK(ranked.empty() || (ranked.front() >= 0 && ranked.back() < corpus.size()),
              "write_trec_run: ranking.indices holds corpus row ", ranked.front() < 0 ? ranked.front() : ranked.back(),
              ", out of range for ", corpus.path(), "'s ", corpus.size(), " passages");
  TextTable ids;
  for (const auto& id : corpus.ids(ranked)) ids.add(id, "", "");
  auto renumbered = indices.clone();
  auto* at = renumbered.data_ptr<int64_t>();
  for (int64_t i = 0; i < renumbered.numel(); ++i) {
    if (at[i] >= 0) at[i] = std::lower_bound(ranked.begin(), ranked.end(), at[i]) - ranked.begin();
  }
  write_trec_run(path, {ranking.scores, renumbered}, query_rows, queries, ids, run_name);
}

}  // namespace contaccum
