#include "contaccum/eval/search.h"

#include <torch/utils.h>

#include <algorithm>
#include <tuple>

namespace contaccum {
namespace {

using torch::Tensor;

// Each row's candidates ordered by (score descending, corpus row ascending),
// the first `k` kept. Sorting by row first makes the stable score sort break
// ties towards the lower row whatever order the candidates came in.
std::pair<Tensor, Tensor> ordered_top(const Tensor& values, const Tensor& rows, int64_t k) {
  const auto by_row = rows.argsort(/*dim=*/int64_t{1}, /*descending=*/false);
  const auto v = values.gather(1, by_row);
  const auto r = rows.gather(1, by_row);
  Tensor sorted, perm;
  std::tie(sorted, perm) = torch::sort(v, /*stable=*/true, /*dim=*/1, /*descending=*/true);
  perm = perm.narrow(1, 0, k);
  return {sorted.narrow(1, 0, k), r.gather(1, perm)};
}

// The `k` best columns of each row of `scores`, unordered. `topk` picks an
// arbitrary subset of the values tied with the k-th best; the rows where it
// left some out are redone so that the lowest tied columns win.
std::pair<Tensor, Tensor> block_top(const Tensor& scores, int64_t k) {
  const int64_t cols = scores.size(1);
  if (k == cols) {
    return {scores, torch::arange(cols, scores.options().dtype(torch::kLong)).expand_as(scores)};
  }
  Tensor values, columns;
  std::tie(values, columns) = scores.topk(k, /*dim=*/1, /*largest=*/true, /*sorted=*/false);
  const auto kth = std::get<0>(values.min(/*dim=*/1, /*keepdim=*/true));
  const auto tied_all = scores.eq(kth).sum(1);
  const auto tied_kept = values.eq(kth).sum(1);
  const auto redo = tied_all.ne(tied_kept).nonzero().squeeze(1);
  if (redo.numel() > 0) {
    const auto s = scores.index_select(0, redo);
    const auto t = kth.index_select(0, redo);
    const auto above = s.gt(t);
    const auto tied = s.eq(t);
    const auto room = k - above.sum(1, /*keepdim=*/true);
    const auto keep = above.logical_or(tied.logical_and(tied.cumsum(1).le(room)));
    // Exactly k per row, so the row-major nonzero list reshapes into rows.
    const auto picked = keep.nonzero().select(1, 1).reshape({redo.numel(), k});
    values.index_copy_(0, redo, s.gather(1, picked));
    columns.index_copy_(0, redo, picked);
  }
  return {values, columns};
}

}  // namespace

namespace {
void check_options(const SearchOptions& options) {
  TORCH_CHECK(options.k() > 0, "SearchOptions::k must be > 0, got ", options.k());
  TORCH_CHECK(options.query_block() > 0, "SearchOptions::query_block must be > 0, got ", options.query_block());
  TORCH_CHECK(options.corpus_block() > 0, "SearchOptions::corpus_block must be > 0, got ", options.corpus_block());
}

// Half precision would blur the ranking (and has no CPU matmul): score in
// float32 unless an input is float64.
torch::ScalarType score_type(torch::ScalarType a, torch::ScalarType b) {
  return c10::promoteTypes(a, b) == torch::kDouble ? torch::kDouble : torch::kFloat;
}
}  // namespace

TopKAccumulator::TopKAccumulator(torch::Tensor queries, SearchOptions options)
    : queries_(std::move(queries)), options_(options) {
  check_options(options_);
  TORCH_CHECK(queries_.defined() && queries_.dim() == 2, "TopKAccumulator: queries must be [Q, dim], got ",
              queries_.defined() ? queries_.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(queries_.is_floating_point(), "TopKAccumulator: queries must be floating point, got ",
              queries_.scalar_type());
  dtype_ = score_type(queries_.scalar_type(), queries_.scalar_type());
}

void TopKAccumulator::add(const torch::Tensor& block, int64_t first_row) {
  TORCH_CHECK(block.defined() && block.dim() == 2, "TopKAccumulator::add: the block must be [rows, dim], got ",
              block.defined() ? block.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(block.size(1) == queries_.size(1), "TopKAccumulator::add: block dim (", block.size(1),
              ") must equal the queries' dim (", queries_.size(1), ")");
  TORCH_CHECK(block.is_floating_point(), "TopKAccumulator::add: the block must be floating point, got ",
              block.scalar_type());
  if (first_row < 0) first_row = next_row_;
  const int64_t n = block.size(0);
  next_row_ = first_row + n;
  rows_ += n;
  const int64_t num_queries = queries_.size(0);
  if (n == 0 || num_queries == 0) return;
  torch::NoGradGuard no_grad;
  const auto dtype = score_type(queries_.scalar_type(), block.scalar_type());
  dtype_ = dtype;
  const auto device = queries_.device();
  std::vector<Tensor> values_out, rows_out;
  for (int64_t q0 = 0; q0 < num_queries; q0 += options_.query_block()) {
    const int64_t q1 = std::min(num_queries, q0 + options_.query_block());
    const auto q = queries_.slice(0, q0, q1).to(dtype);
    Tensor best_values, best_rows;
    if (best_values_.defined()) {
      best_values = best_values_.slice(0, q0, q1).to(device, dtype);
      best_rows = best_rows_.slice(0, q0, q1).to(device);
    }
    for (int64_t c0 = 0; c0 < n; c0 += options_.corpus_block()) {
      const int64_t c1 = std::min(n, c0 + options_.corpus_block());
      const auto part = block.slice(0, c0, c1).to(device, dtype);
      Tensor values, columns;
      std::tie(values, columns) = block_top(q.matmul(part.t()), std::min(options_.k(), c1 - c0));
      auto found = columns + (first_row + c0);
      if (best_values.defined()) {
        values = torch::cat({best_values, values}, 1);
        found = torch::cat({best_rows, found}, 1);
      }
      std::tie(best_values, best_rows) = ordered_top(values, found, std::min(options_.k(), values.size(1)));
    }
    values_out.push_back(best_values.cpu());
    rows_out.push_back(best_rows.cpu());
  }
  best_values_ = torch::cat(values_out);
  best_rows_ = torch::cat(rows_out);
}

void TopKAccumulator::merge(const SearchResult& other) {
  TORCH_CHECK(other.scores.defined() && other.scores.size(0) == queries_.size(0),
              "TopKAccumulator::merge: the other ranking must have one row per query (", queries_.size(0), ")");
  if (other.scores.size(1) == 0) return;
  auto values = other.scores.to(torch::kCPU, dtype_);
  auto rows = other.indices.to(torch::kCPU);
  if (best_values_.defined()) {
    values = torch::cat({best_values_, values}, 1);
    rows = torch::cat({best_rows_, rows}, 1);
  }
  std::tie(best_values_, best_rows_) = ordered_top(values, rows, std::min(options_.k(), values.size(1)));
}

SearchResult TopKAccumulator::result() const {
  SearchResult out;
  if (!best_values_.defined()) {
    out.scores = torch::empty({queries_.size(0), 0}, torch::dtype(dtype_));
    out.indices = torch::empty({queries_.size(0), 0}, torch::kLong);
    return out;
  }
  out.scores = best_values_.clone();
  out.indices = best_rows_.clone();
  return out;
}

SearchResult exact_search(const torch::Tensor& queries, const torch::Tensor& corpus, const SearchOptions& options) {
  check_options(options);
  TORCH_CHECK(queries.defined() && queries.dim() == 2, "exact_search: queries must be [Q, dim], got ",
              queries.defined() ? queries.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(corpus.defined() && corpus.dim() == 2, "exact_search: corpus must be [N, dim], got ",
              corpus.defined() ? corpus.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(queries.size(1) == corpus.size(1), "exact_search: queries dim (", queries.size(1),
              ") must equal corpus dim (", corpus.size(1), ")");
  TORCH_CHECK(queries.is_floating_point() && corpus.is_floating_point(),
              "exact_search: queries and corpus must be floating point, got ", queries.scalar_type(), " and ",
              corpus.scalar_type());
  TopKAccumulator top(queries, options);
  top.add(corpus);
  auto result = top.result();
  if (corpus.size(0) == 0 || queries.size(0) == 0) {
    const auto dtype = score_type(queries.scalar_type(), corpus.scalar_type());
    const int64_t k = std::min(options.k(), corpus.size(0));
    result.scores = torch::empty({queries.size(0), k}, torch::dtype(dtype));
    result.indices = torch::empty({queries.size(0), k}, torch::kLong);
  }
  return result;
}

}  // namespace contaccum
