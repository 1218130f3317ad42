#include "contaccum/loss/info_nce.h"

#include <torch/nn/functional/loss.h>

#include <cmath>
#include <limits>

namespace contaccum {
namespace {

torch::Tensor as_groups(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 || t.dim() == 3, "info_nce: ", name, " must be [rows, dim] or [rows, group, dim], got ",
              t.sizes());
  return t.dim() == 2 ? t.unsqueeze(1) : t;
}

// Scores of `rows` [r, d] against every vector of `groups` [m, g, d], split into
// the positive block [r, m] and the hard-negative block [r, m * (g - 1)]
// (example-major). One matrix product over the contiguous storage: no copy of
// `groups`. For cosine, rows must already be normalised; the column norms are
// divided out afterwards.
std::pair<torch::Tensor, torch::Tensor> score_blocks(const torch::Tensor& rows, const torch::Tensor& groups,
                                                     bool cosine) {
  const int64_t m = groups.size(0), g = groups.size(1), d = groups.size(2);
  const auto flat = groups.reshape({m * g, d});
  auto s = torch::matmul(rows, flat.t());
  if (cosine) s = s / flat.norm(2, {1}).clamp_min(1e-12).unsqueeze(0);
  s = s.view({rows.size(0), m, g});
  auto positives = s.select(2, 0);
  auto negatives = s.slice(2, 1).reshape({rows.size(0), m * (g - 1)});
  return {positives, negatives};
}

}  // namespace

InfoNCEResult info_nce(const torch::Tensor& queries, const torch::Tensor& passages_in, const InfoNCEOptions& options,
                       const InfoNCEBank& bank) {
  TORCH_CHECK(options.temperature() > 0.0 && std::isfinite(options.temperature()),
              "InfoNCEOptions::temperature must be > 0, got ", options.temperature());
  TORCH_CHECK(queries.defined() && queries.dim() == 2, "info_nce: queries must be [n, d], got ",
              queries.defined() ? queries.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(queries.is_floating_point(), "info_nce: queries must be floating point, got ", queries.scalar_type());
  TORCH_CHECK(passages_in.defined(), "info_nce: passages must be defined");
  const auto passages = as_groups(passages_in, "passages");
  const int64_t n = queries.size(0), d = queries.size(1);
  TORCH_CHECK(n > 0, "info_nce: queries must hold at least one row");
  TORCH_CHECK(passages.size(0) == n, "info_nce: passages must hold one group per query: ", n, " queries but ",
              passages.size(0), " passage groups");
  TORCH_CHECK(passages.size(2) == d, "info_nce: passage dim ", passages.size(2), " != query dim ", d);
  TORCH_CHECK(passages.scalar_type() == queries.scalar_type() && passages.device() == queries.device(),
              "info_nce: passages (", passages.scalar_type(), ", ", passages.device(), ") must match queries (",
              queries.scalar_type(), ", ", queries.device(), ")");

  torch::Tensor bank_passages;
  int64_t m_p = 0;
  if (bank.passages.defined()) {
    bank_passages = as_groups(bank.passages, "bank.passages");
    m_p = bank_passages.size(0);
    TORCH_CHECK(bank_passages.size(2) == d, "info_nce: bank.passages dim ", bank_passages.size(2), " != query dim ", d);
    TORCH_CHECK(bank_passages.scalar_type() == queries.scalar_type() && bank_passages.device() == queries.device(),
                "info_nce: bank.passages (", bank_passages.scalar_type(), ", ", bank_passages.device(),
                ") must match queries (", queries.scalar_type(), ", ", queries.device(), ")");
  }
  int64_t m_q = 0;
  if (bank.queries.defined()) {
    TORCH_CHECK(bank.queries.dim() == 2 && bank.queries.size(1) == d, "info_nce: bank.queries must be [m, ", d,
                "], got ", bank.queries.sizes());
    m_q = bank.queries.size(0);
    TORCH_CHECK(m_q == m_p, "info_nce: bank.queries has ", m_q, " rows but bank.passages has ", m_p,
                " groups; each banked query needs its banked positive");
    TORCH_CHECK(bank.queries.scalar_type() == queries.scalar_type() && bank.queries.device() == queries.device(),
                "info_nce: bank.queries (", bank.queries.scalar_type(), ", ", bank.queries.device(),
                ") must match queries (", queries.scalar_type(), ", ", queries.device(), ")");
  }
  const bool cosine = options.similarity() == Similarity::Cosine;

  auto rows_scores = [&](const torch::Tensor& rows, bool is_bank) {
    auto r = rows;
    if (cosine) r = r / r.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
    auto cur = score_blocks(r, passages, cosine);
    std::vector<torch::Tensor> blocks{cur.first};
    torch::Tensor bank_pos, bank_neg;
    if (m_p > 0) {
      std::tie(bank_pos, bank_neg) = score_blocks(r, bank_passages, cosine);
      if (!bank.passages_as_negatives) {
        const double ninf = -std::numeric_limits<double>::infinity();
        if (is_bank) {
          // Keep only each banked query's own positive (the diagonal).
          auto eye = torch::eye(m_p, torch::TensorOptions().dtype(torch::kBool).device(r.device()));
          bank_pos = bank_pos.masked_fill(eye.logical_not(), ninf);
        } else {
          bank_pos = torch::full_like(bank_pos, ninf);
        }
        bank_neg = torch::full_like(bank_neg, ninf);
      }
      blocks.push_back(bank_pos);
    }
    blocks.push_back(cur.second);
    if (m_p > 0) blocks.push_back(bank_neg);
    return torch::cat(blocks, 1);
  };

  auto scores = rows_scores(queries, false);
  if (m_q > 0) scores = torch::cat({scores, rows_scores(bank.queries, true)}, 0);
  scores = scores / options.temperature();

  const int64_t rows = scores.size(0);
  auto target = torch::arange(rows, torch::TensorOptions().dtype(torch::kLong).device(scores.device()));
  InfoNCEResult result;
  result.loss = torch::nn::functional::cross_entropy(scores, target);
  result.scores = scores;
  const int64_t g = passages.size(1);
  const int64_t bank_columns = bank.passages_as_negatives ? m_p * (m_p > 0 ? bank_passages.size(1) : 0) : 0;
  result.negatives_per_query = n * g - 1 + bank_columns;
  return result;
}

InfoNCEImpl::InfoNCEImpl(InfoNCEOptions options_) : options(options_) { reset(); }

void InfoNCEImpl::reset() {
  TORCH_CHECK(options.temperature() > 0.0 && std::isfinite(options.temperature()),
              "InfoNCEOptions::temperature must be > 0, got ", options.temperature());
}

torch::Tensor InfoNCEImpl::forward(const torch::Tensor& queries, const torch::Tensor& passages,
                                   const InfoNCEBank& bank) {
  return info_nce(queries, passages, options, bank).loss;
}

}  // namespace contaccum
