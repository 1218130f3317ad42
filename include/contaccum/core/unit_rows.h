#pragma once

// Rows of unit length: the vectors cosine similarity compares. One home for
// the rule, so that the loss, the banks, the score cache and the staleness
// diagnostic normalise a row to the same bits.

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
/// gives through the clamp). On the CPU in float32 or float64 that is one
/// pass over each row instead of the dozen LibTorch operations of the
/// division's, the clamp's and the norm's backward passes (about 0.25 ms for
/// a micro-batch of 32 queries and 32 passages at width 1,024, every step's
/// loss with cosine similarity). A graph built through it
/// (`create_graph`) differentiates LibTorch's operations instead.
torch::Tensor unit_rows(const torch::Tensor& x);

}  // namespace contaccum
