#include "contaccum/loss/info_nce.h"

#include "tiled_info_nce.h"

#include "contaccum/core/strided_view.h"
#include "contaccum/core/unit_rows.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

namespace contaccum {

const OptionTable<InfoNCEOptions>& InfoNCEOptions::fields() {
  static const OptionTable<InfoNCEOptions> table = {
      option_field<InfoNCEOptions>("similarity", "how a query and a passage are scored: dot or cosine",
                                   CONTACCUM_OPTION_ACCESSORS(similarity)),
      option_field<InfoNCEOptions>("temperature", "scores are divided by it", CONTACCUM_OPTION_ACCESSORS(temperature),
                                   greater_than(0)),
      // The tiling changes the order of the sums, hence the last bits.
      option_field<InfoNCEOptions>("tiled", "compute the loss one tile of the score matrix at a time",
                                   CONTACCUM_OPTION_ACCESSORS(tiled)),
      option_field<InfoNCEOptions>("tile_rows", "rows per tile", CONTACCUM_OPTION_ACCESSORS(tile_rows),
                                   greater_than(0)),
      option_field<InfoNCEOptions>("tile_columns", "columns per tile", CONTACCUM_OPTION_ACCESSORS(tile_columns),
                                   greater_than(0)),
      option_field<InfoNCEOptions>("return_scores", "also return the current rows' score matrix",
                                   CONTACCUM_OPTION_ACCESSORS(return_scores), {}, /*changes_results=*/false),
  };
  return table;
}

void InfoNCEOptions::validate() const { check_option_fields(*this, fields(), "InfoNCEOptions"); }

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
  if (cosine) s = s / flat.norm(2, {1}).clamp_min(kUnitRowsMinNorm).unsqueeze(0);
  s = s.view({rows.size(0), m, g});
  auto positives = s.select(2, 0);
  auto negatives = s.slice(2, 1).reshape({rows.size(0), m * (g - 1)});
  return {positives, negatives};
}

}  // namespace

namespace {

// The inputs as info_nce uses them, checked: passages as [n, g, d] groups,
// the bank's passages likewise.
struct Inputs {
  // The bank's tensors: stored in a reduced type (bf16, fp16) they stay so
  // for the tiled loss (upcast a tile at a time), and are upcast whole for
  // the untiled one.
  torch::Tensor passages, bank_passages, bank_queries;
  int64_t n = 0, d = 0, m_p = 0, m_q = 0;
  bool cosine = false, bank_negatives = false;
  bool bank_cosine = false;  // bank rows need normalising (cosine, not already unit-norm)
};

// The false negatives of one call (empty masks without `InfoNCEIds`), in
// the tiled loss's column orders: current passages example-major, bank
// columns in storage order.
struct Masks {
  IdentityMask current;                            // current rows x current passages; row r's target r * g never masked
  IdentityMask bank;                               // current rows x bank columns
  IdentityMask banked;                             // banked rows x current passages
  torch::Tensor bank_positives, bank_passage_ids;  // for the bank-by-bank block, when computed here
};

// `scores` with -inf at (rows[k], columns[k]), out of place (autograd
// tracks it: those entries get no gradient).
torch::Tensor minus_infinity_at(const torch::Tensor& scores, const torch::Tensor& rows, const torch::Tensor& columns) {
  const auto device = scores.device();
  return scores.index_put({rows.to(device), columns.to(device)},
                          torch::full({}, -std::numeric_limits<double>::infinity(), scores.options()));
}

torch::Tensor checked_ids(const torch::Tensor& ids, int64_t numel, const char* name) {
  TORCH_CHECK(ids.scalar_type() == torch::kLong, "info_nce: ", name, " must be int64, got ", ids.scalar_type());
  TORCH_CHECK(ids.numel() == numel, "info_nce: ", name, " must hold ", numel, " identities, got ", ids.sizes());
  return ids.reshape({-1});
}

torch::Tensor checked_positives(const torch::Tensor& positives, int64_t rows, const char* name) {
  TORCH_CHECK(positives.scalar_type() == torch::kLong, "info_nce: ", name, " must be int64, got ",
              positives.scalar_type());
  TORCH_CHECK(positives.dim() == 2 && positives.size(0) == rows, "info_nce: ", name, " must be [", rows,
              ", positives], got ", positives.sizes());
  return positives;
}

// A bank tensor holds `queries`' type, or a reduced one (bf16, fp16).
bool stored_as(const torch::Tensor& bank, const torch::Tensor& queries) {
  const auto type = bank.scalar_type();
  return type == queries.scalar_type() || type == torch::kBFloat16 || type == torch::kHalf;
}

Inputs checked_inputs(const torch::Tensor& queries, const torch::Tensor& passages_in, const InfoNCEOptions& options,
                      const InfoNCEBank& bank) {
  Inputs in;
  options.validate();
  TORCH_CHECK(queries.defined() && queries.dim() == 2, "info_nce: queries must be [n, d], got ",
              queries.defined() ? queries.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(queries.is_floating_point(), "info_nce: queries must be floating point, got ", queries.scalar_type());
  TORCH_CHECK(passages_in.defined(), "info_nce: passages must be defined");
  in.passages = as_groups(passages_in, "passages");
  const auto& passages = in.passages;
  const int64_t n = queries.size(0), d = queries.size(1);
  in.n = n;
  in.d = d;
  TORCH_CHECK(n > 0, "info_nce: queries must hold at least one row");
  TORCH_CHECK(passages.size(0) == n, "info_nce: passages must hold one group per query: ", n, " queries but ",
              passages.size(0), " passage groups");
  TORCH_CHECK(passages.size(2) == d, "info_nce: passage dim ", passages.size(2), " != query dim ", d);
  TORCH_CHECK(passages.scalar_type() == queries.scalar_type() && passages.device() == queries.device(),
              "info_nce: passages (", passages.scalar_type(), ", ", passages.device(), ") must match queries (",
              queries.scalar_type(), ", ", queries.device(), ")");

  auto& bank_passages = in.bank_passages;
  auto& m_p = in.m_p;
  if (bank.passages.defined()) {
    bank_passages = as_groups(bank.passages, "bank.passages");
    m_p = bank_passages.size(0);
    TORCH_CHECK(bank_passages.size(2) == d, "info_nce: bank.passages dim ", bank_passages.size(2), " != query dim ", d);
    TORCH_CHECK(stored_as(bank_passages, queries) && bank_passages.device() == queries.device(),
                "info_nce: bank.passages (", bank_passages.scalar_type(), ", ", bank_passages.device(),
                ") must match queries (", queries.scalar_type(), ", ", queries.device(),
                "; bf16 or fp16 banks with floating-point queries)");
    if (!options.tiled()) bank_passages = bank_passages.to(queries.scalar_type());
  }
  auto& m_q = in.m_q;
  if (bank.queries.defined()) {
    TORCH_CHECK(bank.queries.dim() == 2 && bank.queries.size(1) == d, "info_nce: bank.queries must be [m, ", d,
                "], got ", bank.queries.sizes());
    m_q = bank.queries.size(0);
    TORCH_CHECK(m_q == m_p, "info_nce: bank.queries has ", m_q, " rows but bank.passages has ", m_p,
                " groups; each banked query needs its banked positive");
    TORCH_CHECK(stored_as(bank.queries, queries) && bank.queries.device() == queries.device(),
                "info_nce: bank.queries (", bank.queries.scalar_type(), ", ", bank.queries.device(),
                ") must match queries (", queries.scalar_type(), ", ", queries.device(),
                "; bf16 or fp16 banks with floating-point queries)");
    in.bank_queries = options.tiled() ? bank.queries : bank.queries.to(queries.scalar_type());
  }
  in.cosine = options.similarity() == Similarity::Cosine;
  in.bank_cosine = in.cosine && !bank.normalized;
  in.bank_negatives = m_p > 0 && bank.passages_as_negatives;
  if (m_q > 0 && in.bank_negatives && bank.row_logsumexp.defined()) {
    TORCH_CHECK(bank.row_logsumexp.dim() == 1 && bank.row_logsumexp.size(0) == m_q,
                "info_nce: bank.row_logsumexp must be [", m_q, "] (one per banked query), got ",
                bank.row_logsumexp.sizes());
  }
  return in;
}

Masks false_negatives(const Inputs& in, const InfoNCEBank& bank, const InfoNCEIds& ids) {
  Masks masks;
  if (!ids.defined()) return masks;
  const int64_t g = in.passages.size(1);
  const auto passage_ids = checked_ids(ids.passages, in.n * g, "ids.passages");
  const auto positives = checked_positives(ids.positives, in.n, "ids.positives");
  masks.current = IdentityMask::of(positives, passage_ids, g, 0);
  if (in.m_p > 0 && bank.passage_ids.defined()) {
    masks.bank_passage_ids = checked_ids(bank.passage_ids, in.m_p * in.bank_passages.size(1), "bank.passage_ids");
    if (in.bank_negatives) masks.bank = IdentityMask::of(positives, masks.bank_passage_ids);
  }
  if (in.m_q > 0 && bank.query_positive_ids.defined()) {
    masks.bank_positives = checked_positives(bank.query_positive_ids, in.m_q, "bank.query_positive_ids");
    masks.banked = IdentityMask::of(masks.bank_positives, passage_ids);
  }
  return masks;
}

MaskedColumns masked_counts(const Masks& masks, int64_t g) {
  MaskedColumns out;
  if (!masks.current.empty()) {
    const auto slots = masks.current.columns().remainder(g);
    out.in_batch = slots.eq(0).sum().item<int64_t>();
    out.hard_negative = masks.current.size() - out.in_batch;
  }
  out.bank = masks.bank.size();
  out.banked_query = masks.banked.size();
  return out;
}

torch::Tensor normalised(const torch::Tensor& rows, bool cosine) { return cosine ? unit_rows(rows) : rows; }

// The current rows' scores (every column, with gradients to queries and
// passages), in the spec's layout and divided by the temperature.
// Masked entries (`masks`) are -inf; their columns are mapped from the
// tiled order into the spec's layout.
torch::Tensor current_scores(const torch::Tensor& q, const Inputs& in, const InfoNCEBank& bank, double inv_tau,
                             const Masks& masks) {
  auto cur = score_blocks(q, in.passages, in.cosine);
  std::vector<torch::Tensor> blocks{cur.first};
  if (in.m_p > 0) {
    std::pair<torch::Tensor, torch::Tensor> bank_scores;
    if (bank.passages_as_negatives) {
      bank_scores = score_blocks(q, in.bank_passages, in.bank_cosine);
    } else {
      const double ninf = -std::numeric_limits<double>::infinity();
      const int64_t gb = in.bank_passages.size(1);
      bank_scores.first = torch::full({in.n, in.m_p}, ninf, q.options());
      bank_scores.second = torch::full({in.n, in.m_p * (gb - 1)}, ninf, q.options());
    }
    blocks.push_back(bank_scores.first);
    blocks.push_back(cur.second);
    blocks.push_back(bank_scores.second);
  } else {
    blocks.push_back(cur.second);
  }
  auto scores = torch::cat(blocks, 1) * inv_tau;
  if (masks.current.empty() && masks.bank.empty()) return scores;
  const int64_t n = in.n, g = in.passages.size(1), m_p = in.m_p;
  const int64_t g_b = m_p > 0 ? in.bank_passages.size(1) : 1;
  // Current passage j = e g + s: its positive column e, or its hard negative
  // column after the positives (and the bank's positives).
  auto layout = [](const torch::Tensor& j, int64_t group, int64_t first_positive, int64_t first_negative) {
    const auto e = j.div(group, "floor"), slot = j.remainder(group);
    return torch::where(slot.eq(0), e + first_positive, first_negative + e * (group - 1) + slot - 1);
  };
  std::vector<torch::Tensor> rows, columns;
  if (!masks.current.empty()) {
    rows.push_back(masks.current.rows());
    columns.push_back(layout(masks.current.columns(), g, 0, n + m_p));
  }
  if (!masks.bank.empty()) {
    rows.push_back(masks.bank.rows());
    columns.push_back(layout(masks.bank.columns(), g_b, n, n + m_p + n * (g - 1)));
  }
  return minus_infinity_at(scores, torch::cat(rows), torch::cat(columns));
}

// What the loss needs of the banked query rows besides their scores against
// the current passages, all constants: the rows (normalised for cosine),
// their target scores, and the log-sum-exp over the bank's own columns.
struct BankedRows {
  torch::Tensor rows, target_score, bank_lse;
};

BankedRows banked_rows(const Inputs& in, const InfoNCEOptions& options, const InfoNCEBank& bank, double inv_tau,
                       const Masks& masks) {
  torch::NoGradGuard no_grad;
  BankedRows out;
  // Rows normalised here are normalised in the loss's type (a reduced-type
  // bank's are upcast for it; banks of unit rows, as the strategy keeps
  // them, are not copied).
  out.rows = in.bank_cosine ? normalised(detached(in.bank_queries).to(in.passages.scalar_type()), true)
                            : detached(in.bank_queries);
  const auto bank_positives = detached(in.bank_passages).select(1, 0);
  const auto& cached = bank.row_target_dot;
  const bool use_cached = !in.bank_cosine && cached.defined() && cached.dim() == 1 &&
                          cached.size(0) == out.rows.size(0) && cached.scalar_type() == in.passages.scalar_type() &&
                          cached.device() == in.passages.device();
  out.target_score = use_cached ? cached : banked_target_dots(out.rows, bank_positives, in.passages.scalar_type());
  if (in.bank_cosine) {
    out.target_score =
        out.target_score /
        at::norm(bank_positives, 2, {1}, false, out.target_score.scalar_type()).clamp_min(kUnitRowsMinNorm);
  }
  out.target_score = out.target_score * inv_tau;
  if (!in.bank_negatives) {
    out.bank_lse = out.target_score;  // only its own positive is unmasked
  } else if (bank.row_logsumexp.defined()) {
    out.bank_lse = bank.row_logsumexp.to(out.target_score.scalar_type());
  } else {
    IdentityMask bank_by_bank;
    if (masks.bank_positives.defined() && masks.bank_passage_ids.defined()) {
      bank_by_bank = IdentityMask::of(masks.bank_positives, masks.bank_passage_ids, in.bank_passages.size(1), 0);
    }
    out.bank_lse = bank_row_logsumexp(in.bank_queries, in.bank_passages, options, 1024, 4096, bank_by_bank);
  }
  return out;
}

// The banked rows' summed cross-entropy. They are constants themselves, but
// their scores against the current passages carry gradient to the passage
// tower. Their bank-by-bank block is a constant and only enters through its
// log-sum-exp.
torch::Tensor banked_rows_loss(const Inputs& in, const InfoNCEOptions& options, const InfoNCEBank& bank, double inv_tau,
                               const Masks& masks) {
  const auto banked = banked_rows(in, options, bank, inv_tau, masks);
  // [n g, m]: every current passage against every banked query. Laid out
  // passage-major so that each banked row's log-sum-exp below reduces over
  // the short leading dimension with contiguous inner loops; column order
  // does not matter to a log-sum-exp.
  auto current_passages = in.passages.reshape({in.n * in.passages.size(1), in.d});
  if (in.cosine) current_passages = normalised(current_passages, in.cosine);
  auto current = torch::matmul(current_passages, banked.rows.t()) * inv_tau;
  if (!masks.banked.empty()) current = minus_infinity_at(current, masks.banked.columns(), masks.banked.rows());
  auto lse = torch::logsumexp(torch::cat({current, banked.bank_lse.unsqueeze(0)}, 0), 0);
  return (lse - banked.target_score).sum();
}

// Every row's summed cross-entropy through the whole score matrix (autograd
// ops; `InfoNCEOptions::tiled(false)`).
torch::Tensor untiled_loss_sum(const torch::Tensor& queries, const Inputs& in, const InfoNCEOptions& options,
                               const InfoNCEBank& bank, double inv_tau, const Masks& masks) {
  auto scores = current_scores(normalised(queries, in.cosine), in, bank, inv_tau, masks);
  auto target = torch::arange(in.n, torch::TensorOptions().dtype(torch::kLong).device(scores.device()));
  auto loss_sum = torch::nn::functional::cross_entropy(
      scores, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  if (in.m_q > 0) loss_sum = loss_sum + banked_rows_loss(in, options, bank, inv_tau, masks);
  return loss_sum;
}

// The same sum, one tile of the score matrix at a time (tiled_info_nce.h).
torch::Tensor tiled_loss_sum(const torch::Tensor& queries, const Inputs& in, const InfoNCEOptions& options,
                             const InfoNCEBank& bank, double inv_tau, const Masks& masks,
                             std::shared_ptr<InfoNCEBankScores> returned_scores) {
  detail::TiledInfoNCEInputs tiled;
  tiled.mask_current = masks.current;
  tiled.mask_bank = masks.bank;
  tiled.mask_banked = masks.banked;
  tiled.returned_scores = std::move(returned_scores);
  const int64_t g = in.passages.size(1);
  tiled.queries = normalised(queries, in.cosine);
  tiled.passages = normalised(in.passages.reshape({in.n * g, in.d}), in.cosine);
  tiled.group = g;
  tiled.inv_tau = inv_tau;
  tiled.tile_rows = options.tile_rows();
  tiled.tile_columns = options.tile_columns();
  if (in.bank_negatives) {
    torch::NoGradGuard no_grad;
    tiled.bank_columns = detached(in.bank_passages).reshape({-1, in.d});
    if (in.bank_cosine) {
      // (Norms of a reduced-type bank taken in the queries' type.)
      tiled.bank_column_scale =
          at::norm(tiled.bank_columns, 2, {1}, false, queries.scalar_type()).clamp_min(kUnitRowsMinNorm).reciprocal();
    }
  }
  if (in.m_q > 0) {
    auto banked = banked_rows(in, options, bank, inv_tau, masks);
    tiled.bank_rows = banked.rows.contiguous();
    tiled.bank_rows_target = banked.target_score;
    tiled.bank_rows_outside_logsumexp = banked.bank_lse;
  }
  auto sum = detail::tiled_info_nce_sum(tiled);
  if (tiled.returned_scores && tiled.returned_scores->defined()) {
    tiled.returned_scores->queries = tiled.queries.detach();
    tiled.returned_scores->passages = tiled.passages.detach().view({in.n, g, in.d});
  }
  return sum;
}

}  // namespace

InfoNCEResult info_nce(const torch::Tensor& queries, const torch::Tensor& passages_in, const InfoNCEOptions& options,
                       const InfoNCEBank& bank, const InfoNCEIds& ids) {
  const auto in = checked_inputs(queries, passages_in, options, bank);
  const auto masks = false_negatives(in, bank, ids);
  const double inv_tau = 1.0 / options.temperature();
  auto returned_scores = bank.return_scores ? std::make_shared<InfoNCEBankScores>() : nullptr;
  const auto loss_sum = options.tiled() ? tiled_loss_sum(queries, in, options, bank, inv_tau, masks, returned_scores)
                                        : untiled_loss_sum(queries, in, options, bank, inv_tau, masks);
  InfoNCEResult result;
  if (returned_scores) result.bank_scores = *returned_scores;
  result.loss = loss_sum / static_cast<double>(in.n + in.m_q);
  if (options.return_scores()) {
    torch::NoGradGuard no_grad;
    result.scores = current_scores(normalised(queries.detach(), in.cosine), in, bank, inv_tau, masks);
  }
  const int64_t bank_columns = in.bank_negatives ? in.m_p * in.bank_passages.size(1) : 0;
  result.masked = masked_counts(masks, in.passages.size(1));
  result.negatives_per_query =
      static_cast<double>(in.n * in.passages.size(1) - 1 + bank_columns) -
      static_cast<double>(result.masked.in_batch + result.masked.hard_negative + result.masked.bank) /
          static_cast<double>(in.n);
  return result;
}

torch::Tensor bank_row_logsumexp(const torch::Tensor& bank_queries, const torch::Tensor& bank_passages_in,
                                 const InfoNCEOptions& options, int64_t rows_per_block, int64_t columns_per_block,
                                 const IdentityMask& mask) {
  TORCH_CHECK(rows_per_block > 0, "bank_row_logsumexp: rows_per_block must be > 0, got ", rows_per_block);
  TORCH_CHECK(bank_queries.defined() && bank_queries.dim() == 2,
              "bank_row_logsumexp: bank_queries must be [m, d], got ",
              bank_queries.defined() ? bank_queries.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(bank_passages_in.defined(), "bank_row_logsumexp: bank_passages must be defined");
  const auto bank_passages = as_groups(bank_passages_in, "bank_passages");
  TORCH_CHECK(bank_passages.size(2) == bank_queries.size(1), "bank_row_logsumexp: bank_passages dim ",
              bank_passages.size(2), " != bank_queries dim ", bank_queries.size(1));
  TORCH_CHECK(columns_per_block > 0, "bank_row_logsumexp: columns_per_block must be > 0, got ", columns_per_block);
  torch::NoGradGuard no_grad;
  const bool cosine = options.similarity() == Similarity::Cosine;
  // Rows in a reduced type are upcast (the tiles compute in the rows' type);
  // columns are upcast a tile at a time.
  const auto type =
      at::promote_types(at::promote_types(bank_queries.scalar_type(), torch::kFloat), bank_passages.scalar_type());
  const auto rows = normalised(detached(bank_queries).to(type), cosine);
  const auto columns = detached(bank_passages).reshape({-1, bank_passages.size(2)});
  torch::Tensor scale;
  if (cosine) scale = at::norm(columns, 2, {1}, false, type).clamp_min(kUnitRowsMinNorm).reciprocal();
  return detail::tiled_logsumexp(rows, columns, scale, 1.0 / options.temperature(), rows_per_block, columns_per_block,
                                 mask);
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

// In blocks of rows, so that the elementwise product is never an [m, d]
// temporary (4 MiB for a bank of 1,024 at width 1,024); a batched 1 x 1
// product (bmm) avoids it too, but makes one tiny matrix product per row and
// is several times slower. Banks stored in bf16 are upcast a block at a time.
// Each block's sum over dimension 1 reduces every row on its own, in the
// same order whatever the block's row count (ATen splits a reduction across
// threads only for a single output, and a row of d <= 32,768 floats is below
// its grain anyway), which is what lets BankScoreCache compute a row once.
namespace {
// Row r of a dotted with row r of b, for float32 or float64 CPU rows of
// `type` with contiguous elements: eight partial sums (element k into sum k
// mod 8, each a chain of products added in k order) added in one fixed
// tree. No ATen call per row block (a micro-batch's enqueue made a dozen),
// and an order of operations fixed by the code, so the same bits on every
// CPU (ATen's sum orders its additions by the vector width).
template <typename T>
void row_by_row_dots(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& out) {
  const int64_t m = a.size(0), d = a.size(1);
  const T *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
  T* po = out.data_ptr<T>();
  for (int64_t r = 0; r < m; ++r) {
    const T* x = pa + r * a.stride(0);
    const T* y = pb + r * b.stride(0);
    T part[8] = {};
    int64_t k = 0;
    for (; k + 8 <= d; k += 8)
      for (int l = 0; l < 8; ++l) part[l] += x[k + l] * y[k + l];
    for (int l = 0; k < d; ++k, ++l) part[l] += x[k] * y[k];
    po[r] = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
  }
}
}  // namespace

torch::Tensor banked_target_dots(const torch::Tensor& a, const torch::Tensor& b, torch::ScalarType type) {
  const bool direct = (type == torch::kFloat || type == torch::kDouble) && a.device().is_cpu() && b.device().is_cpu() &&
                      a.scalar_type() == type && b.scalar_type() == type && a.dim() == 2 && b.sizes() == a.sizes() &&
                      a.stride(1) == 1 && b.stride(1) == 1;
  if (direct) {
    auto out = torch::empty({a.size(0)}, a.options());
    if (type == torch::kFloat) {
      row_by_row_dots<float>(a, b, out);
    } else {
      row_by_row_dots<double>(a, b, out);
    }
    return out;
  }
  const int64_t m = a.size(0), block = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, a.size(1)));
  auto out = torch::empty({m}, a.options().dtype(type));
  for (int64_t r = 0; r < m; r += block) {
    const int64_t e = std::min(m, r + block);
    auto part = out.narrow(0, r, e - r);
    at::sum_out(part, a.narrow(0, r, e - r).to(type) * b.narrow(0, r, e - r).to(type), {1});
  }
  return out;
}

}  // namespace contaccum
