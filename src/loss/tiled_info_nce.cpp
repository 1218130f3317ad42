#include "tiled_info_nce.h"

#include "contaccum/core/strided_view.h"

#include "contaccum/core/precision.h"
#include "contaccum/loss/short_products.h"
#include "contaccum/loss/softmax_tile.h"

#include <torch/autograd.h>

#include <algorithm>
#include <limits>

// The scheme of Inf-CL ("Breaking the Memory Barrier", 2024) on the CPU: each
// row's log-sum-exp is accumulated over column tiles with a running maximum,
// and the backward pass recomputes every tile from the inputs and the saved
// log-sum-exps, turning it into the softmax's share of the gradient in place.
// Every product goes through short_products.h: a tile with a short side (a
// micro-batch against a bank) is multiplied by its kernels, in an order of
// operations fixed by the code; larger tiles by LibTorch.
// All work on a tile happens in one reused buffer; nothing of size rows x
// columns is allocated, except that scores fitting in one tile's memory are
// kept from the forward pass instead of being recomputed (a ContAccum
// micro-batch against its banks: 32 x 1,056 and 1,024 x 32 at the main job's
// size), which bounds the memory the same way.

namespace contaccum::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool present(const torch::Tensor& t) { return t.defined() && t.numel() > 0; }

// One kind of columns: vectors [c, d] and an optional factor per column.
struct Columns {
  torch::Tensor vectors, scale;
  int64_t count() const { return present(vectors) ? vectors.size(0) : 0; }
};

// Scores of rows [r, d] against columns [c0, c1), into `into` when it is
// given (a block of a kept score matrix) or else into `buffer`, as an [r, c]
// view of its first r * c elements.
// The buffer grows to the largest tile asked for, which for a short block
// (32 current rows against a bank, a bank's rows against 32 passages) is far
// below tile_rows x tile_columns.
class Tiler {
 public:
  Tiler(const torch::Tensor& like, double inv_tau) : options_(like.options()), inv_tau_(inv_tau) {}

  // `rows` are rows [r0, r0 + rows.size(0)) of `mask`'s matrix.
  torch::Tensor scores(const torch::Tensor& rows, const Columns& columns, int64_t c0, int64_t c1,
                       const torch::Tensor& into = {}, const IdentityMask* mask = nullptr, int64_t r0 = 0) {
    auto tile = into.defined() ? into : scratch(rows.size(0), c1 - c0);
    row_dots_out(tile, computable(rows), computable(narrow_view(columns.vectors, 0, c0, c1 - c0)), inv_tau_);
    if (columns.scale.defined()) tile.mul_(narrow_view(columns.scale, 0, c0, c1 - c0).unsqueeze(0));
    if (mask) mask->apply(tile, r0, c0);
    return tile;
  }

  // The buffer as an [r, c] matrix.
  // `part` in the type the loss computes in: banked rows and columns stored
  // in a reduced type (bf16, fp16) are upcast a tile at a time, so that the
  // banks are never copied whole.
  const torch::TensorOptions& options() const { return options_; }

  torch::Tensor computable(const torch::Tensor& part) const {
    return part.scalar_type() == options_.dtype() ? part : part.to(options_.dtype());
  }

  torch::Tensor scratch(int64_t r, int64_t c) {
    if (!buffer_.defined() || buffer_.numel() < r * c) buffer_ = torch::empty({r * c}, options_);
    return narrow_view(buffer_, 0, 0, r * c).view({r, c});
  }

 private:
  torch::TensorOptions options_;
  torch::Tensor buffer_;
  double inv_tau_;
};

// Running log-sum-exp of rows over the tiles seen so far.
struct RunningLogSumExp {
  torch::Tensor max, sum;

  // Folds the tile `scores` in, leaving exp(scores - new max) in `work`
  // (which may be `scores` itself: a scratch tile is worked on in place, a
  // kept one is read once into the buffer, never copied first). With
  // `masked`, a row may have seen only -inf so far: its maximum is then held
  // at the lowest finite value, so that exp gives 0 rather than NaN (the
  // target column is never masked, so every row ends finite).
  void add(const torch::Tensor& scores, torch::Tensor work, bool masked = false) {
    // Fused (softmax_tile.h): one read of the tile, no `work` written.
    if (fold_logsumexp_tile(scores, max, sum, masked)) return;
    auto new_max = torch::maximum(max, at::amax(scores, {1}));
    if (masked) new_max.clamp_min_(lowest_finite(new_max.scalar_type()));
    at::sub_out(work, scores, new_max.unsqueeze(1)).exp_();
    sum.mul_((max - new_max).exp_()).add_(work.sum(1));
    max = new_max;
  }
  // The kernels' logarithm (softmax_tile.h): ATen's gives other last bits
  // with other vector widths.
  torch::Tensor value() const {
    auto out = torch::empty_like(max);
    if (tile_add_log_out(out, max, sum)) return out;
    return max + sum.log();
  }
};

// Log-sum-exp of every row of `rows` over every column of each kind, started
// from `outside` (a log-sum-exp already taken over other columns) if given.
// `kept`, empty or one per kind: [rows, columns] matrices that receive the
// scores, for the backward pass to use instead of recomputing them.
// `masks`, empty or one per kind (null: none): the false negatives of
// `rows` against that kind.
torch::Tensor rows_logsumexp(Tiler& tiler, const torch::Tensor& rows, const std::vector<const Columns*>& kinds,
                             const torch::Tensor& outside, const TiledInfoNCEInputs& in,
                             const std::vector<torch::Tensor>& kept = {},
                             const std::vector<const IdentityMask*>& masks = {}) {
  const int64_t n = rows.size(0);
  auto out = torch::empty({n}, tiler.options());
  for (int64_t r0 = 0; r0 < n; r0 += in.tile_rows) {
    const int64_t r1 = std::min(n, r0 + in.tile_rows);
    const auto block = tiler.computable(narrow_view(rows, 0, r0, r1 - r0));
    RunningLogSumExp running;
    if (outside.defined()) {
      running.max = narrow_view(outside, 0, r0, r1 - r0).clone();
      running.sum = torch::ones({r1 - r0}, tiler.options());
    } else {
      running.max = torch::full({r1 - r0}, -std::numeric_limits<double>::infinity(), tiler.options());
      running.sum = torch::zeros({r1 - r0}, tiler.options());
    }
    for (size_t k = 0; k < kinds.size(); ++k) {
      const Columns& kind = *kinds[k];
      const IdentityMask* mask = masks.empty() || !masks[k] || masks[k]->empty() ? nullptr : masks[k];
      for (int64_t c0 = 0; c0 < kind.count(); c0 += in.tile_columns) {
        const int64_t c1 = std::min(kind.count(), c0 + in.tile_columns);
        if (kept.empty()) {
          auto tile = tiler.scores(block, kind, c0, c1, {}, mask, r0);
          running.add(tile, tile, mask != nullptr);
        } else {
          // Kept as scored; the running sum works in the scratch tile.
          const auto scores = tiler.scores(block, kind, c0, c1,
                                           narrow_view(narrow_view(kept[k], 0, r0, r1 - r0), 1, c0, c1 - c0), mask, r0);
          running.add(scores, tiler.scratch(r1 - r0, c1 - c0), mask != nullptr);
        }
      }
    }
    narrow_view(out, 0, r0, r1 - r0).copy_(running.value());
  }
  return out;
}

// Adds d(sum of the rows' log-sum-exps)/d(rows, columns) times `weight`:
// each tile becomes weight * softmax * inv_tau (times the column factor),
// then one product per side. `row_grad` / `column_grad` undefined: not needed.
// `kept` defined: the forward pass's [rows, columns] scores, used (and
// overwritten, unless `kept_read_only`) instead of scoring again.
void add_softmax_gradients(Tiler& tiler, const torch::Tensor& rows, const torch::Tensor& lse, const Columns& columns,
                           torch::Tensor row_grad, torch::Tensor column_grad, double weight,
                           const TiledInfoNCEInputs& in, const torch::Tensor& kept = {}, bool kept_read_only = false,
                           const IdentityMask* mask = nullptr) {
  if (mask && mask->empty()) mask = nullptr;
  const int64_t n = rows.size(0), c = columns.count();
  for (int64_t r0 = 0; r0 < n; r0 += in.tile_rows) {
    const int64_t r1 = std::min(n, r0 + in.tile_rows);
    const auto block = tiler.computable(narrow_view(rows, 0, r0, r1 - r0));
    const auto block_lse = narrow_view(lse, 0, r0, r1 - r0).unsqueeze(1);
    for (int64_t c0 = 0; c0 < c; c0 += in.tile_columns) {
      const int64_t c1 = std::min(c, c0 + in.tile_columns);
      // `source` becomes softmax * weight * inv_tau in `tile`: a scored
      // scratch tile or a kept tile in place, or a kept tile the score cache
      // still reads into a scratch tile of the same layout.
      torch::Tensor source, tile;
      if (!kept.defined()) {
        source = tile = tiler.scores(block, columns, c0, c1, {}, mask, r0);
      } else {
        source = narrow_view(narrow_view(kept, 0, r0, r1 - r0), 1, c0, c1 - c0);
        const bool column_major = source.stride(0) == 1 && source.stride(1) != 1;
        tile = !kept_read_only ? source
               : column_major  ? tiler.scratch(c1 - c0, r1 - r0).t()
                               : tiler.scratch(r1 - r0, c1 - c0);
      }
      const double factor = weight * in.inv_tau;
      if (!softmax_weights_tile(tile, source, narrow_view(lse, 0, r0, r1 - r0), factor)) {
        at::sub_out(tile, source, block_lse);
        tile.exp_().mul_(factor);
      }
      if (columns.scale.defined()) tile.mul_(narrow_view(columns.scale, 0, c0, c1 - c0).unsqueeze(0));
      const auto vectors = tiler.computable(narrow_view(columns.vectors, 0, c0, c1 - c0));
      if (row_grad.defined()) add_weighted_rows_(narrow_view(row_grad, 0, r0, r1 - r0), tile, vectors);
      if (column_grad.defined()) add_weighted_rows_(narrow_view(column_grad, 0, c0, c1 - c0), tile.t(), block);
    }
  }
}

// What the backward pass needs besides the saved tensors: the constants, kept
// in the node's saved data so that they live as long as the graph.
void keep_constants(AutogradContext* ctx, const TiledInfoNCEInputs& in) {
  ctx->saved_data["bank_columns"] = in.bank_columns;
  ctx->saved_data["bank_column_scale"] = in.bank_column_scale;
  ctx->saved_data["bank_rows"] = in.bank_rows;
  const std::pair<const char*, const IdentityMask*> masks[] = {
      {"mask_current", &in.mask_current}, {"mask_bank", &in.mask_bank}, {"mask_banked", &in.mask_banked}};
  for (const auto& [name, mask] : masks) {
    ctx->saved_data[std::string(name) + "_rows"] = mask->rows();
    ctx->saved_data[std::string(name) + "_columns"] = mask->columns();
  }
  ctx->saved_data["group"] = in.group;
  ctx->saved_data["inv_tau"] = in.inv_tau;
  ctx->saved_data["tile_rows"] = in.tile_rows;
  ctx->saved_data["tile_columns"] = in.tile_columns;
  ctx->saved_data["keep_scores"] = in.keep_scores;
  ctx->saved_data["scores_returned"] = in.keep_scores && in.returned_scores != nullptr;
}

TiledInfoNCEInputs kept_constants(AutogradContext* ctx) {
  TiledInfoNCEInputs in;
  auto& data = ctx->saved_data;
  in.bank_columns = data["bank_columns"].toTensor();
  in.bank_column_scale = data["bank_column_scale"].toTensor();
  in.bank_rows = data["bank_rows"].toTensor();
  auto mask = [&data](const std::string& name) {
    return IdentityMask::from_pairs(data[name + "_rows"].toTensor(), data[name + "_columns"].toTensor());
  };
  in.mask_current = mask("mask_current");
  in.mask_bank = mask("mask_bank");
  in.mask_banked = mask("mask_banked");
  in.group = data["group"].toInt();
  in.inv_tau = data["inv_tau"].toDouble();
  in.tile_rows = data["tile_rows"].toInt();
  in.tile_columns = data["tile_columns"].toInt();
  in.keep_scores = data["keep_scores"].toBool();
  return in;
}

class TiledInfoNCE : public torch::autograd::Function<TiledInfoNCE> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& queries, const torch::Tensor& passages,
                               const TiledInfoNCEInputs& in) {
    Tiler tiler(queries, in.inv_tau);
    const Columns current{passages, {}}, bank{in.bank_columns, in.bank_column_scale};
    const int64_t n = queries.size(0);
    const auto positives = passages.view({n, in.group, -1}).select(1, 0);
    // Kept scores: current rows x current columns, x bank columns, and banked
    // rows x current columns.
    std::vector<torch::Tensor> kept;
    if (in.keep_scores) {
      for (const auto& [r, c] : {std::pair{n, current.count()}, std::pair{n, bank.count()},
                                 std::pair{present(in.bank_rows) ? in.bank_rows.size(0) : int64_t{0}, current.count()}})
        // Stored column-major when there are more rows than columns (a
        // bank's rows against the micro-batch's passages): the short
        // products (short_products.h) then write each passage's scores
        // against consecutive bank rows next to each other, and the
        // gradient reads them the same way; where LibTorch's product is
        // used instead, it runs as columns x rows^T, the orientation
        // OpenBLAS runs 1.5-1.9 times as fast for a short side of tens of
        // rows (the bank bench's two score rates).
        kept.push_back(r > c ? torch::empty({c, r}, queries.options()).t() : torch::empty({r, c}, queries.options()));
    }
    const auto lse =
        rows_logsumexp(tiler, queries, {&current, &bank}, {}, in,
                       in.keep_scores ? std::vector<torch::Tensor>{kept[0], kept[1]} : std::vector<torch::Tensor>{},
                       {&in.mask_current, &in.mask_bank});
    auto loss = (lse - (queries * positives).sum(1) * in.inv_tau).sum();
    torch::Tensor bank_lse;
    if (present(in.bank_rows)) {
      bank_lse = rows_logsumexp(tiler, in.bank_rows, {&current}, in.bank_rows_outside_logsumexp, in,
                                in.keep_scores ? std::vector<torch::Tensor>{kept[2]} : std::vector<torch::Tensor>{},
                                {&in.mask_banked});
      loss = loss + (bank_lse - in.bank_rows_target).sum();
    }
    for (size_t k = 0; k < kept.size(); ++k) ctx->saved_data["kept_" + std::to_string(k)] = kept[k];
    if (in.keep_scores && in.returned_scores) {
      in.returned_scores->current_by_current = kept[0];
      in.returned_scores->current_by_bank = kept[1];
      in.returned_scores->bank_by_current = kept[2];
    }
    ctx->save_for_backward({queries, passages, lse, bank_lse});
    keep_constants(ctx, in);
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &queries = saved[0], &passages = saved[1], &lse = saved[2], &bank_lse = saved[3];
    const auto in = kept_constants(ctx);
    const double weight = grad_outputs[0].item<double>();
    torch::Tensor grad_q, grad_p;
    if (ctx->needs_input_grad(0)) grad_q = torch::zeros_like(queries);
    if (ctx->needs_input_grad(1)) grad_p = torch::zeros_like(passages);
    Tiler tiler(queries, in.inv_tau);
    const Columns current{passages, {}}, bank{in.bank_columns, in.bank_column_scale};
    // The kept scores are overwritten below (unless they were returned to the
    // caller, who still reads them: then each is copied into the tile buffer),
    // so they serve one backward pass; another (retain_graph) finds them gone
    // and scores again.
    const bool read_only = ctx->saved_data["scores_returned"].toBool();
    torch::Tensor kept[3];
    for (int k = 0; k < 3 && in.keep_scores; ++k) {
      auto& entry = ctx->saved_data["kept_" + std::to_string(k)];
      if (entry.isTensor()) kept[k] = entry.toTensor();
      entry = c10::IValue();
    }
    add_softmax_gradients(tiler, queries, lse, current, grad_q, grad_p, weight, in, kept[0], read_only,
                          &in.mask_current);
    if (grad_q.defined()) {
      add_softmax_gradients(tiler, queries, lse, bank, grad_q, {}, weight, in, kept[1], read_only, &in.mask_bank);
    }
    if (bank_lse.defined() && grad_p.defined()) {
      add_softmax_gradients(tiler, in.bank_rows, bank_lse, current, {}, grad_p, weight, in, kept[2], read_only,
                            &in.mask_banked);
    }
    // The target term -s[r, r]: row r against its own positive.
    const int64_t n = queries.size(0);
    const double target = -weight * in.inv_tau;
    if (grad_q.defined()) grad_q.add_(passages.view({n, in.group, -1}).select(1, 0), target);
    if (grad_p.defined()) grad_p.view({n, in.group, -1}).select(1, 0).add_(queries, target);
    return {grad_q, grad_p, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor tiled_info_nce_sum(const TiledInfoNCEInputs& inputs) {
  TORCH_CHECK(inputs.tile_rows > 0 && inputs.tile_columns > 0, "InfoNCEOptions tiles must be > 0, got ",
              inputs.tile_rows, " x ", inputs.tile_columns);
  TiledInfoNCEInputs in = inputs;
  // No tile larger than the problem: the buffer is sized by the tile.
  const int64_t most_rows = std::max(in.queries.size(0), present(in.bank_rows) ? in.bank_rows.size(0) : int64_t{0});
  const int64_t most_columns =
      std::max(in.passages.size(0), present(in.bank_columns) ? in.bank_columns.size(0) : int64_t{0});
  // Scores that fit in one tile's memory are kept for the backward pass
  // rather than computed again: a third fewer products, the same numbers.
  const int64_t n = in.queries.size(0), c = in.passages.size(0);
  const int64_t kept = n * (c + (present(in.bank_columns) ? in.bank_columns.size(0) : 0)) +
                       (present(in.bank_rows) ? in.bank_rows.size(0) : 0) * c;
  in.keep_scores = kept <= in.tile_rows * in.tile_columns;
  in.tile_rows = std::min(in.tile_rows, most_rows);
  in.tile_columns = in.keep_scores ? most_columns : std::min(in.tile_columns, most_columns);
  return TiledInfoNCE::apply(in.queries.contiguous(), in.passages.contiguous(), in);
}

torch::Tensor tiled_logsumexp(const torch::Tensor& rows, const torch::Tensor& columns,
                              const torch::Tensor& column_scale, double inv_tau, int64_t tile_rows,
                              int64_t tile_columns, const IdentityMask& mask) {
  torch::NoGradGuard no_grad;
  TiledInfoNCEInputs in;
  in.tile_rows = std::max<int64_t>(1, std::min(tile_rows, rows.size(0)));
  in.tile_columns = std::max<int64_t>(1, std::min(tile_columns, columns.size(0)));
  Tiler tiler(rows, inv_tau);
  const Columns kind{columns.contiguous(), column_scale};
  return rows_logsumexp(tiler, rows.contiguous(), {&kind}, {}, in, {}, {&mask});
}

}  // namespace contaccum::detail
