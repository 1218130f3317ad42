#pragma once

// Rows of unit length: the vectors cosine similarity compares. The one
// implementation for rows (the loss's current rows, the banks' rows, the
// score cache, the staleness diagnostic and DualEncoder's `normalize`
// normalise a row to the same bits) and the one home of the minimum norm,
// which the loss also uses where it divides scores by a bank row's norm.

#include <torch/types.h>

namespace contaccum {

/// Rows shorter than this are divided by it instead of by their length
/// (a zero row stays zero rather than becoming NaN), as
/// `torch::nn::functional::normalize` does with its default eps.
constexpr double kUnitRowsMinNorm = 1e-12;

/// x / max(|x|, kUnitRowsMinNorm), |x| the L2 norm along the last
/// dimension: the same bits as `x / x.norm(2, {-1}, true).clamp_min(1e-12)`.
///
/// Differentiable, with its own backward pass: for a row of length r >=
/// kUnitRowsMinNorm and unit row y, the gradient g becomes (g - y (y . g)) /
/// r; a shorter row's becomes g / kUnitRowsMinNorm (what LibTorch's autograd
/// gives through the clamp). For contiguous float32 or float64 rows on the
/// CPU that is two passes over each row (the dot product, then the update),
/// in place of the dozen LibTorch operations of the division's, the clamp's
/// and the norm's backward passes (about 0.25 ms less for a micro-batch of 32
/// queries and 32 passages at width 1,024, every step's loss with cosine
/// similarity); elsewhere it is that formula in LibTorch's operations. It
/// keeps x for the backward pass, not the output, so the output may be
/// changed in place. A graph built through it (`create_graph`)
/// differentiates LibTorch's operations instead.
torch::Tensor unit_rows(const torch::Tensor& x);

}  // namespace contaccum
