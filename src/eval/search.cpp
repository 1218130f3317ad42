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

SearchResult exact_search(const torch::Tensor& queries, const torch::Tensor& corpus, const SearchOptions& options) {
  TORCH_CHECK(options.k() > 0, "SearchOptions::k must be > 0, got ", options.k());
  TORCH_CHECK(options.query_block() > 0, "SearchOptions::query_block must be > 0, got ", options.query_block());
  TORCH_CHECK(options.corpus_block() > 0, "SearchOptions::corpus_block must be > 0, got ", options.corpus_block());
  TORCH_CHECK(queries.defined() && queries.dim() == 2, "exact_search: queries must be [Q, dim], got ",
              queries.defined() ? queries.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(corpus.defined() && corpus.dim() == 2, "exact_search: corpus must be [N, dim], got ",
              corpus.defined() ? corpus.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(queries.size(1) == corpus.size(1), "exact_search: queries dim (", queries.size(1),
              ") must equal corpus dim (", corpus.size(1), ")");
  TORCH_CHECK(queries.is_floating_point() && corpus.is_floating_point(),
              "exact_search: queries and corpus must be floating point, got ", queries.scalar_type(), " and ",
              corpus.scalar_type());

  torch::NoGradGuard no_grad;
  // Half precision would blur the ranking (and has no CPU matmul): score in
  // float32 unless an input is float64.
  const auto dtype =
      c10::promoteTypes(queries.scalar_type(), corpus.scalar_type()) == torch::kDouble ? torch::kDouble : torch::kFloat;
  const auto device = queries.device();
  const int64_t num_queries = queries.size(0), rows = corpus.size(0);
  const int64_t k = std::min(options.k(), rows);
  SearchResult result;
  result.scores = torch::empty({num_queries, k}, torch::dtype(dtype));
  result.indices = torch::empty({num_queries, k}, torch::kLong);
  if (num_queries == 0 || k == 0) return result;

  for (int64_t q0 = 0; q0 < num_queries; q0 += options.query_block()) {
    const int64_t q1 = std::min(num_queries, q0 + options.query_block());
    const auto q = queries.slice(0, q0, q1).to(dtype);
    Tensor best_values, best_rows;
    for (int64_t c0 = 0; c0 < rows; c0 += options.corpus_block()) {
      const int64_t c1 = std::min(rows, c0 + options.corpus_block());
      const auto block = corpus.slice(0, c0, c1).to(device, dtype);
      Tensor values, columns;
      std::tie(values, columns) = block_top(q.matmul(block.t()), std::min(k, c1 - c0));
      auto found = columns + c0;
      if (best_values.defined()) {
        values = torch::cat({best_values, values}, 1);
        found = torch::cat({best_rows, found}, 1);
      }
      std::tie(best_values, best_rows) = ordered_top(values, found, std::min(k, values.size(1)));
    }
    result.scores.slice(0, q0, q1).copy_(best_values);
    result.indices.slice(0, q0, q1).copy_(best_rows);
  }
  return result;
}

}  // namespace contaccum
