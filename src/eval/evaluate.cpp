#include "contaccum/eval/evaluate.h"

#include "contaccum/core/progress.h"

#include <torch/utils.h>

#include <algorithm>
#include <functional>
#include <limits>

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

const OptionTable<DenseEvalOptions>& DenseEvalOptions::fields() {
  using O = DenseEvalOptions;
  static const OptionTable<O> table = {
      option_field<O>("batch_size", "texts encoded per forward pass", CONTACCUM_OPTION_ACCESSORS(batch_size),
                      greater_than(0), false),
      option_field<O>("query_max_length", "token limit of a query", CONTACCUM_OPTION_ACCESSORS(query_max_length),
                      greater_than(0)),
      option_field<O>("passage_max_length", "token limit of a passage", CONTACCUM_OPTION_ACCESSORS(passage_max_length),
                      greater_than(0)),
      option_field<O>("progress", "show the corpus search's progress", CONTACCUM_OPTION_ACCESSORS(progress), {}, false),
  };
  return table;
}

namespace {

void check_dense_options(const DenseEvalOptions& options) {
  check_option_fields(options, DenseEvalOptions::fields(), "DenseEvalOptions");
  TORCH_CHECK(options.search().k() > 0, "SearchOptions::k must be > 0, got ", options.search().k());
}

// Calls `sink(first_row, reps)` with the representations of rows `[begin,
// end)`, a block of at most `block_rows` at a time, in order.
using RowSink = std::function<void(int64_t first_row, const torch::Tensor& reps)>;
using BlockVisitor = std::function<void(int64_t begin, int64_t end, int64_t block_rows, const RowSink& sink)>;

// The ranking of `queries` `[Q, d]` over `rows` corpus rows that `visit`
// produces a block at a time, this rank's contiguous share only; the shares'
// rankings are merged on rank 0 (the other ranks get an empty one). Shares
// are whole multiples of `batch` rows (the encoder's batch), so every batch a
// rank encodes is one a single process encodes: the same rows together, the
// same representations bit for bit, whatever the number of ranks.
SearchResult streamed_search(const torch::Tensor& queries, int64_t rows, int64_t batch, int64_t block_rows,
                             const BlockVisitor& visit, const SearchOptions& search, bool progress,
                             Collective& collective) {
  const int64_t world = collective.world_size(), rank = collective.rank();
  const auto counts = contiguous_shares((rows + batch - 1) / batch, world);
  int64_t first_batch = 0;
  for (int64_t r = 0; r < rank; ++r) first_batch += counts[static_cast<size_t>(r)];
  const int64_t begin = std::min(rows, first_batch * batch);
  const int64_t end = std::min(rows, (first_batch + counts[static_cast<size_t>(rank)]) * batch);
  TopKAccumulator top(queries, search);
  ProgressReporter bar("search", end - begin, world > 1 ? "passages (rank 0's share)" : "passages",
                       !progress || rank != 0);
  visit(begin, end, block_rows, [&](int64_t first, const torch::Tensor& reps) {
    top.add(reps, first);
    bar.advance(reps.size(0));
  });
  bar.finish();
  auto mine = top.result();
  if (world == 1) return mine;
  // Fixed width k for the gather: missing entries lose every comparison.
  const int64_t k = search.k(), have = mine.scores.size(1);
  auto scores = torch::full({queries.size(0), k}, -std::numeric_limits<double>::infinity(), mine.scores.options());
  auto indices = torch::full({queries.size(0), k}, std::numeric_limits<int64_t>::max(), torch::kLong);
  scores.slice(1, 0, have).copy_(mine.scores);
  indices.slice(1, 0, have).copy_(mine.indices);
  const std::vector<int64_t> same(static_cast<size_t>(world), queries.size(0));
  auto all_scores = all_gather_rows(collective, scores, same);
  auto all_indices = all_gather_rows(collective, indices, same);
  if (rank != 0) return {};
  TopKAccumulator merged(queries, search);
  for (int64_t r = 0; r < world; ++r) {
    merged.merge({all_scores[static_cast<size_t>(r)], all_indices[static_cast<size_t>(r)]});
  }
  auto out = merged.result();
  const int64_t kept = std::min(k, rows);
  return {out.scores.slice(1, 0, kept).contiguous(), out.indices.slice(1, 0, kept).contiguous()};
}

EvalResult score_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& queries,
                       const std::vector<Qrel>& qrels, const DenseEvalOptions& options, int64_t rows,
                       const BlockVisitor& visit, Collective& collective) {
  EvalResult result;
  result.query_rows = judged_queries(qrels);
  TORCH_CHECK(!result.query_rows.empty(), "evaluate_dense: no query has a relevant passage (a qrel with score > 0)");
  const auto query_reps = encode_texts(model, Tower::Query, query_texts(queries, result.query_rows), tokenize,
                                       options.query_max_length(), options.batch_size());
  // The search runs where the model does; the corpus streams there by blocks.
  result.ranking = streamed_search(query_reps.to(model->device()), rows, options.batch_size(),
                                   options.batch_size() * 64, visit, options.search(), options.progress(), collective);
  if (collective.rank() != 0) return {};
  result.metrics = compute_metrics(result.ranking, result.query_rows, qrels, options.metrics());
  return result;
}

}  // namespace

torch::Tensor encode_passages(DualEncoder& model, const TextTable& block, const TextEncoderFn& tokenize,
                              int64_t max_length, int64_t batch_size) {
  std::vector<std::string> texts;
  texts.reserve(static_cast<size_t>(block.size()));
  for (int64_t row = 0; row < block.size(); ++row) texts.push_back(block.full_text(row));
  return encode_texts(model, Tower::Passage, texts, tokenize, max_length, batch_size);
}

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options) {
  return evaluate_dense(model, tokenize, TablePassages(corpus), queries, qrels, options, *local_collective());
}

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options,
                          Collective& collective) {
  return evaluate_dense(model, tokenize, TablePassages(corpus), queries, qrels, options, collective);
}

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const PassageSource& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options,
                          Collective& collective) {
  check_qrels(qrels, queries.size(), corpus.size(), "evaluate_dense");
  check_dense_options(options);
  // Passages are encoded a block at a time and searched at once: memory is
  // one block plus each query's running top k, whatever the corpus size.
  auto visit = [&](int64_t begin, int64_t end, int64_t block_rows, const RowSink& sink) {
    corpus.for_each_block(begin, end, block_rows, [&](int64_t first, const TextTable& block) {
      sink(first, encode_passages(model, block, tokenize, options.passage_max_length(), options.batch_size()));
    });
  };
  return score_dense(model, tokenize, queries, qrels, options, corpus.size(), visit, collective);
}

namespace {

// The rankings of `total` queries searched 1,024 at a time by `search(begin,
// end)`, so that progress can be shown; the rankings do not depend on the cut.
SearchResult search_by_chunks(const char* label, int64_t total, bool progress,
                              const std::function<SearchResult(int64_t, int64_t)>& search) {
  const int64_t chunk = 1024;
  ProgressReporter bar(label, total, "queries", !progress);
  std::vector<torch::Tensor> scores, indices;
  for (int64_t begin = 0; begin < total; begin += chunk) {
    const int64_t end = std::min(total, begin + chunk);
    auto part = search(begin, end);
    scores.push_back(part.scores);
    indices.push_back(part.indices);
    bar.advance(end - begin);
  }
  bar.finish();
  return {torch::cat(scores), torch::cat(indices)};
}

}  // namespace

void check_passage_vectors(DualEncoder& model, int64_t dim, const std::string& similarity, const std::string& what,
                           uint32_t model_crc32, const std::string& made_by) {
  TORCH_CHECK(dim == model->dim(), what, " is ", dim, " wide but the model's embeddings are ", model->dim());
  const std::string mine = enum_name(model->options().similarity());
  TORCH_CHECK(similarity == mine, what, " was built for ", similarity, " similarity but the model scores by ", mine);
  check_encoded_by(model, model_crc32, what, made_by);
}

void check_encoded_by(DualEncoder& model, uint32_t model_crc32, const std::string& what, const std::string& made_by) {
  if (model_crc32 == 0) return;
  const auto weights = weights_crc32(*model);
  TORCH_CHECK(model_crc32 == weights, what, " was encoded by other weights",
              made_by.empty() ? "" : " (" + made_by + ")", ": their CRC-32 is ", model_crc32, ", this model's is ",
              weights, "; encode the corpus again with this model");
}

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, EmbeddingsReader& embeddings,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options) {
  check_qrels(qrels, queries.size(), embeddings.info().count, "evaluate_dense");
  check_dense_options(options);
  check_passage_vectors(model, embeddings.info().dim, embeddings.info().similarity,
                        "evaluate_dense: the embeddings directory", embeddings.info().model_crc32,
                        embeddings.info().model);
  auto visit = [&](int64_t begin, int64_t end, int64_t block_rows, const RowSink& sink) {
    for (int64_t at = begin; at < end; at += block_rows) sink(at, embeddings.read(at, std::min(end, at + block_rows)));
  };
  return score_dense(model, tokenize, queries, qrels, options, embeddings.info().count, visit, *local_collective());
}

EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const VectorIndex& index,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options) {
  check_qrels(qrels, queries.size(), index.size(), "evaluate_dense");
  check_dense_options(options);
  check_passage_vectors(model, index.dim(), index.options().similarity(), "evaluate_dense: the index",
                        index.model_crc32());
  EvalResult result;
  result.query_rows = judged_queries(qrels);
  TORCH_CHECK(!result.query_rows.empty(), "evaluate_dense: no query has a relevant passage (a qrel with score > 0)");
  const auto query_reps = encode_texts(model, Tower::Query, query_texts(queries, result.query_rows), tokenize,
                                       options.query_max_length(), options.batch_size());
  result.ranking = search_by_chunks("index search", query_reps.size(0), options.progress(), [&](int64_t b, int64_t e) {
    return index.search(query_reps.slice(0, b, e), options.search().k());
  });
  result.metrics = compute_metrics(result.ranking, result.query_rows, qrels, options.metrics());
  return result;
}

EvalResult evaluate_bm25(const BM25Index& index, const TextTable& queries, const std::vector<Qrel>& qrels,
                         const MetricsOptions& metrics, int64_t k, bool progress) {
  TORCH_CHECK(k > 0, "evaluate_bm25: k must be > 0, got ", k);
  check_qrels(qrels, queries.size(), index.size(), "evaluate_bm25");
  EvalResult result;
  result.query_rows = judged_queries(qrels);
  TORCH_CHECK(!result.query_rows.empty(), "evaluate_bm25: no query has a relevant passage (a qrel with score > 0)");
  const auto texts = query_texts(queries, result.query_rows);
  result.ranking = search_by_chunks("bm25", static_cast<int64_t>(texts.size()), progress, [&](int64_t b, int64_t e) {
    return index.search(std::vector<std::string>(texts.begin() + b, texts.begin() + e), k);
  });
  result.metrics = compute_metrics(result.ranking, result.query_rows, qrels, metrics);
  return result;
}

}  // namespace contaccum
