#include "contaccum/eval/evaluate.h"

#include <torch/utils.h>

#include <algorithm>

namespace contaccum {
namespace {

// Puts the model back in the mode it had, also when encoding throws.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(DualEncoder& model) : model_(model), was_training_(model->is_training()) { model_->eval(); }
  ~EvalModeGuard() { model_->train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  DualEncoder& model_;
  bool was_training_;
};

// Qrels must refer to rows of the tables evaluated: a mismatch means the
// qrels were read against other tables.
void check_qrels(const std::vector<Qrel>& qrels, int64_t num_queries, int64_t num_passages, const char* fn) {
  for (size_t i = 0; i < qrels.size(); ++i) {
    const auto& q = qrels[i];
    TORCH_CHECK(q.query >= 0 && q.query < num_queries, fn, ": qrels[", i, "] has query row ", q.query,
                ", out of range for a queries table of ", num_queries, " rows");
    TORCH_CHECK(q.passage >= 0 && q.passage < num_passages, fn, ": qrels[", i, "] has passage row ", q.passage,
                ", out of range for a corpus of ", num_passages, " rows");
  }
}

std::vector<std::string> query_texts(const TextTable& queries, const std::vector<int64_t>& rows) {
  std::vector<std::string> texts;
  texts.reserve(rows.size());
  for (const auto row : rows) texts.emplace_back(queries.text(row));
  return texts;
}

}  // namespace

torch::Tensor encode_texts(DualEncoder& model, Tower side, const std::vector<std::string>& texts,
                           const TextEncoderFn& tokenize, int64_t max_length, int64_t batch_size) {
  TORCH_CHECK(!model.is_empty(), "encode_texts: model must not be empty");
  TORCH_CHECK(tokenize != nullptr, "encode_texts: tokenize must be set");
  TORCH_CHECK(max_length > 0, "encode_texts: max_length must be > 0, got ", max_length);
  TORCH_CHECK(batch_size > 0, "encode_texts: batch_size must be > 0, got ", batch_size);
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  const auto n = static_cast<int64_t>(texts.size());
  auto out = torch::empty({n, model->dim()}, torch::kFloat);
  std::vector<std::string> batch;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const int64_t end = std::min(n, begin + batch_size);
    batch.assign(texts.begin() + begin, texts.begin() + end);
    const auto input = tokenize(batch, max_length);
    const auto reps = side == Tower::Query ? model->encode_queries(input) : model->encode_passages(input);
    out.slice(0, begin, end).copy_(reps);
  }
  return out;
}

namespace {

void check_dense_options(const DenseEvalOptions& options) {
  TORCH_CHECK(options.batch_size() > 0, "DenseEvalOptions::batch_size must be > 0, got ", options.batch_size());
  TORCH_CHECK(options.query_max_length() > 0, "DenseEvalOptions::query_max_length must be > 0, got ",
              options.query_max_length());
  TORCH_CHECK(options.passage_max_length() > 0, "DenseEvalOptions::passage_max_length must be > 0, got ",
              options.passage_max_length());
  TORCH_CHECK(options.search().k() > 0, "SearchOptions::k must be > 0, got ", options.search().k());
}

// Representations of corpus rows [begin, end), [end - begin, dim] float32.
torch::Tensor encode_corpus_rows(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                                 int64_t begin, int64_t end, const DenseEvalOptions& options) {
  // Passage texts are built a chunk at a time: a large corpus's texts would
  // otherwise be copied whole next to the table.
  const int64_t chunk = options.batch_size() * 64;
  auto reps = torch::empty({end - begin, model->dim()}, torch::kFloat);
  std::vector<std::string> passages;
  for (int64_t at = begin; at < end; at += chunk) {
    const int64_t stop = std::min(end, at + chunk);
    passages.clear();
    for (int64_t row = at; row < stop; ++row) passages.push_back(corpus.full_text(row));
    reps.slice(0, at - begin, stop - begin)
        .copy_(encode_texts(model, Tower::Passage, passages, tokenize, options.passage_max_length(),
                            options.batch_size()));
  }
  return reps;
}

EvalResult search_and_score(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& queries,
                            const std::vector<Qrel>& qrels, const DenseEvalOptions& options,
                            const torch::Tensor& passage_reps, std::vector<int64_t> query_rows) {
  EvalResult result;
  result.query_rows = std::move(query_rows);
  const auto query_reps = encode_texts(model, Tower::Query, query_texts(queries, result.query_rows), tokenize,
                                       options.query_max_length(), options.batch_size());
  // The search runs where the model does; the corpus streams there by blocks.
  result.ranking = exact_search(query_reps.to(model->device()), passage_reps, options.search());
  result.metrics = compute_metrics(result.ranking, result.query_rows, qrels, options.metrics());
  return result;
}

}  // namespace

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options) {
  return evaluate_dense(model, tokenize, corpus, queries, qrels, options, *local_collective());
}

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options,
                          Collective& collective) {
  check_qrels(qrels, queries.size(), corpus.size(), "evaluate_dense");
  check_dense_options(options);
  auto query_rows = judged_queries(qrels);
  TORCH_CHECK(!query_rows.empty(), "evaluate_dense: no query has a relevant passage (a qrel with score > 0)");
  const int64_t world = collective.world_size(), rank = collective.rank(), rows = corpus.size();
  // Contiguous shards, so the gathered rows are the corpus rows in order.
  std::vector<int64_t> counts;
  for (int64_t r = 0; r < world; ++r) counts.push_back(rows / world + (r < rows % world ? 1 : 0));
  int64_t begin = 0;
  for (int64_t r = 0; r < rank; ++r) begin += counts[static_cast<size_t>(r)];
  auto mine = encode_corpus_rows(model, tokenize, corpus, begin, begin + counts[static_cast<size_t>(rank)], options);
  if (world == 1) return search_and_score(model, tokenize, queries, qrels, options, mine, std::move(query_rows));
  auto shards = all_gather_rows(collective, mine, counts);
  if (rank != 0) return {};
  return search_and_score(model, tokenize, queries, qrels, options, torch::cat(shards), std::move(query_rows));
}

EvalResult evaluate_bm25(const BM25Index& index, const TextTable& queries, const std::vector<Qrel>& qrels,
                         const MetricsOptions& metrics, int64_t k) {
  TORCH_CHECK(k > 0, "evaluate_bm25: k must be > 0, got ", k);
  check_qrels(qrels, queries.size(), index.size(), "evaluate_bm25");
  EvalResult result;
  result.query_rows = judged_queries(qrels);
  TORCH_CHECK(!result.query_rows.empty(), "evaluate_bm25: no query has a relevant passage (a qrel with score > 0)");
  result.ranking = index.search(query_texts(queries, result.query_rows), k);
  result.metrics = compute_metrics(result.ranking, result.query_rows, qrels, metrics);
  return result;
}

}  // namespace contaccum
