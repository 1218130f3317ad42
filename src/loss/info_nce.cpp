#include "contaccum/loss/info_nce.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>
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
  const bool bank_negatives = m_p > 0 && bank.passages_as_negatives;
  if (m_q > 0 && bank_negatives && bank.row_logsumexp.defined()) {
    TORCH_CHECK(bank.row_logsumexp.dim() == 1 && bank.row_logsumexp.size(0) == m_q,
                "info_nce: bank.row_logsumexp must be [", m_q, "] (one per banked query), got ",
                bank.row_logsumexp.sizes());
  }
  const double inv_tau = 1.0 / options.temperature();
  auto normalised = [&](const torch::Tensor& rows) {
    return cosine ? rows / rows.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12) : rows;
  };

  // Current rows: every column, with gradients to queries and passages.
  const auto q = normalised(queries);
  auto cur = score_blocks(q, passages, cosine);
  std::vector<torch::Tensor> blocks{cur.first};
  if (m_p > 0) {
    std::pair<torch::Tensor, torch::Tensor> bank_scores;
    if (bank.passages_as_negatives) {
      bank_scores = score_blocks(q, bank_passages, cosine);
    } else {
      const double ninf = -std::numeric_limits<double>::infinity();
      const int64_t gb = bank_passages.size(1);
      bank_scores.first = torch::full({n, m_p}, ninf, q.options());
      bank_scores.second = torch::full({n, m_p * (gb - 1)}, ninf, q.options());
    }
    blocks.push_back(bank_scores.first);
    blocks.push_back(cur.second);
    blocks.push_back(bank_scores.second);
  } else {
    blocks.push_back(cur.second);
  }
  auto scores = torch::cat(blocks, 1) * inv_tau;
  auto target = torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(scores.device()));
  auto loss_sum = torch::nn::functional::cross_entropy(
      scores, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));

  if (m_q > 0) {
    // Banked rows: constants themselves, but their scores against the current
    // passages carry gradient to the passage tower. Their bank-by-bank block
    // is a constant and only enters through its log-sum-exp.
    torch::Tensor bq, bank_positives;
    {
      torch::NoGradGuard no_grad;
      bq = normalised(bank.queries.detach());
      bank_positives = bank_passages.select(1, 0);
    }
    // [n g, m]: every current passage against every banked query. Laid out
    // passage-major so that each banked row's log-sum-exp below reduces
    // over the short leading dimension with contiguous inner loops; column
    // order does not matter to a log-sum-exp.
    auto current_passages = passages.reshape({n * passages.size(1), d});
    if (cosine) current_passages = normalised(current_passages);
    auto current = torch::matmul(current_passages, bq.t()) * inv_tau;
    torch::Tensor bank_lse, target_score;
    {
      torch::NoGradGuard no_grad;
      target_score = (bq * bank_positives).sum(1);
      if (cosine) target_score = target_score / bank_positives.norm(2, {1}).clamp_min(1e-12);
      target_score = target_score * inv_tau;
      if (!bank_negatives) {
        bank_lse = target_score;  // only its own positive is unmasked
      } else if (bank.row_logsumexp.defined()) {
        bank_lse = bank.row_logsumexp.to(target_score.scalar_type());
      } else {
        bank_lse = bank_row_logsumexp(bank.queries, bank_passages, options);
      }
    }
    auto lse = torch::logsumexp(torch::cat({current, bank_lse.unsqueeze(0)}, 0), 0);
    loss_sum = loss_sum + (lse - target_score).sum();
  }

  InfoNCEResult result;
  result.loss = loss_sum / static_cast<double>(n + m_q);
  result.scores = scores;
  const int64_t g = passages.size(1);
  const int64_t bank_columns = bank_negatives ? m_p * bank_passages.size(1) : 0;
  result.negatives_per_query = n * g - 1 + bank_columns;
  return result;
}

torch::Tensor bank_row_logsumexp(const torch::Tensor& bank_queries, const torch::Tensor& bank_passages_in,
                                 const InfoNCEOptions& options, int64_t rows_per_block) {
  TORCH_CHECK(rows_per_block > 0, "bank_row_logsumexp: rows_per_block must be > 0, got ", rows_per_block);
  TORCH_CHECK(bank_queries.defined() && bank_queries.dim() == 2,
              "bank_row_logsumexp: bank_queries must be [m, d], got ",
              bank_queries.defined() ? bank_queries.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(bank_passages_in.defined(), "bank_row_logsumexp: bank_passages must be defined");
  const auto bank_passages = as_groups(bank_passages_in, "bank_passages");
  TORCH_CHECK(bank_passages.size(2) == bank_queries.size(1), "bank_row_logsumexp: bank_passages dim ",
              bank_passages.size(2), " != bank_queries dim ", bank_queries.size(1));
  torch::NoGradGuard no_grad;
  const bool cosine = options.similarity() == Similarity::Cosine;
  auto rows = bank_queries.detach();
  if (cosine) rows = rows / rows.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  const int64_t m = rows.size(0), d = rows.size(1);
  const auto flat = bank_passages.reshape({-1, d});
  torch::Tensor inv_norms;
  if (cosine) inv_norms = flat.norm(2, {1}).clamp_min(1e-12).reciprocal().unsqueeze(0);
  auto out = torch::empty({m}, rows.options());
  // Row blocks bound the temporary score matrix to rows_per_block x columns.
  for (int64_t r = 0; r < m; r += rows_per_block) {
    const int64_t e = std::min(m, r + rows_per_block);
    auto s = torch::matmul(rows.slice(0, r, e), flat.t());
    if (cosine) s.mul_(inv_norms);
    s.mul_(1.0 / options.temperature());
    out.slice(0, r, e).copy_(torch::logsumexp(s, 1));
  }
  return out;
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
