#pragma once

// InfoNCE summed over rows, computed tile by tile: the score matrix is never
// held whole, in the forward or the backward pass. Internal to src/loss/; the
// public entry point is `info_nce`.

#include "contaccum/loss/info_nce.h"

#include <torch/types.h>

#include <memory>

namespace contaccum::detail {

/// The operands of the tiled loss, every vector already in the form the
/// scores take (normalised for cosine). Scores are `row . column * inv_tau`,
/// bank columns further multiplied by `bank_column_scale` when it is defined.
struct TiledInfoNCEInputs {
  /// Current query rows `[n, d]` (autograd input).
  torch::Tensor queries;
  /// Current passage vectors `[n * g, d]`, example-major (autograd input);
  /// row `r * g` is the positive of query row `r`.
  torch::Tensor passages;
  int64_t group = 1;
  /// Bank passage vectors `[c, d]` scored as extra negative columns of the
  /// current rows; undefined or empty: none. Constant.
  torch::Tensor bank_columns;
  /// Optional `[c]`: a factor per bank column (cosine: its inverse norm).
  torch::Tensor bank_column_scale;
  /// Banked query rows `[m, d]` (constant), scored against the current
  /// passages only; undefined or empty: none.
  torch::Tensor bank_rows;
  /// `[m]`: each banked row's log-sum-exp over the columns it sees outside
  /// the current passages (its bank block), and `[m]` its target score.
  torch::Tensor bank_rows_outside_logsumexp, bank_rows_target;
  /// False negatives (`IdentityMask`, empty: none): current rows against
  /// current passages, current rows against bank columns, banked rows
  /// against current passages. Their entries are -inf in every tile.
  IdentityMask mask_current, mask_bank, mask_banked;
  double inv_tau = 1.0;
  int64_t tile_rows = 1024, tile_columns = 4096;
  /// Set by `tiled_info_nce_sum`: every score fits in `tile_rows x
  /// tile_columns` floats, so the forward pass keeps them (column tiles then
  /// span each kind's columns) and the backward pass reads them instead of
  /// scoring again, with the same numbers.
  bool keep_scores = false;
  /// When set and the scores are kept: receives them (the kept tensors
  /// themselves; the backward pass then reads them without overwriting).
  std::shared_ptr<InfoNCEBankScores> returned_scores;
};

/// The summed cross-entropy of every current row (over current passages and
/// bank columns) and every banked row (over current passages plus its
/// outside log-sum-exp), with gradients to `queries` and `passages`. The
/// backward pass recomputes each tile from the saved inputs and the rows'
/// log-sum-exps, so memory beyond the inputs and their gradients is one
/// `tile_rows x tile_columns` tile; when every score fits in that many
/// floats, they are kept from the forward pass instead (at most one tile's
/// memory more, and a third fewer matrix products).
torch::Tensor tiled_info_nce_sum(const TiledInfoNCEInputs& inputs);

/// Without gradients: each row's log-sum-exp of `row . column * inv_tau *
/// column_scale` over every column (`column_scale` optional), tile by tile.
/// `mask`'s entries (empty: none) are left out.
torch::Tensor tiled_logsumexp(const torch::Tensor& rows, const torch::Tensor& columns,
                              const torch::Tensor& column_scale, double inv_tau, int64_t tile_rows,
                              int64_t tile_columns, const IdentityMask& mask = {});

}  // namespace contaccum::detail
