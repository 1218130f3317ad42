#pragma once

// The tiled loss's element-wise work on a float32 CPU score tile, each a
// single pass (src/loss/softmax_tile_kernels.h), on the short products'
// instruction set and threads (short_products.h): ATen makes each of them
// several passes over the tile. The exponential and logarithm are the kernels' own and
// every sum runs in an order fixed by the code, so every instruction set,
// and one thread or two, give the same bits (tests/loss/softmax_tile_test.cpp).
// The tiled loss and the bank score cache use them. Each returns false,
// having done nothing, when the kernels do not take the operands (another
// type or device, a tile with neither stride 1, running values or
// log-sum-exps that are not contiguous float32, or the short products
// switched off): the caller then does the same with ATen.

#include <torch/types.h>

namespace contaccum {

/// Folds `scores` [r, c] into the running log-sum-exps `max`, `sum` ([r],
/// contiguous float32): max' = max(max, row maximum) (held at the lowest
/// finite value when `masked`), sum' = sum exp(max - max') + sum over the
/// row of exp(score - max').
bool fold_logsumexp_tile(const torch::Tensor& scores, const torch::Tensor& max, const torch::Tensor& sum, bool masked);

/// out = exp(scores - lse[:, None]) * factor (`out` [r, c] may be `scores`;
/// `lse` [r] contiguous float32).
bool softmax_weights_tile(const torch::Tensor& out, const torch::Tensor& scores, const torch::Tensor& lse,
                          double factor);

/// out = base + log(x), element by element, with the kernels' own
/// logarithm (within 2 units in the last place of the exact value; -inf for
/// 0, NaN for NaN and negative x): `[n]` contiguous float32 CPU tensors
/// (`out` may be `base`). How a log-sum-exp's running maximum and sum of
/// exponentials become its value, with the same bits on every CPU (ATen's
/// log gives other last bits with other vector widths).
bool tile_add_log_out(const torch::Tensor& out, const torch::Tensor& base, const torch::Tensor& x);

/// out = log(exp(a) + exp(b)), element by element, with the kernels'
/// exponential and logarithm (the larger plus log(1 + exp(smaller -
/// larger))): float32 CPU tensors of one shape, 1-D or 2-D with contiguous
/// rows (`out` may be `a` or `b`); -inf when both are, NaN for NaN.
bool tile_logaddexp_out(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b);

/// tile_logaddexp_out's kernel on `n` floats at raw addresses (`out` may be
/// `a` or `b`): for a caller walking rows of a tensor it already holds,
/// with no view made per row (the score cache's tree, level by level). The
/// same bits as tile_logaddexp_out for the same row.
void tile_logaddexp_floats(float* out, const float* a, const float* b, int64_t n);

/// The kernels' logarithm of every element of a float32 CPU tensor (as
/// tile_add_log_out takes it), on the chosen instruction set.
torch::Tensor tile_log(const torch::Tensor& x);

/// The kernels' exponential of every element of a float32 CPU tensor, on
/// the chosen instruction set: within 2 units in the last place of the exact
/// value for arguments in [-87, 88], subnormal or 0 below, +inf above 88.73,
/// NaN for NaN; the same bits on every instruction set.
torch::Tensor tile_exp(const torch::Tensor& x);

}  // namespace contaccum
