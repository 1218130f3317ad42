#pragma once

// A linear layer whose backward adds its weight's and bias's gradients into
// their `.grad` in place. Internal to src/encoders/.

#include <torch/types.h>

namespace contaccum::detail {

/// `torch::linear(input, weight, bias)` (`input` `[rows, in]`, `weight`
/// `[out, in]`, `bias` `[out]` or undefined), the same forward. The backward
/// returns the input's gradient as usual and adds `grad^T input` into
/// `weight.grad()` with one in-place product (`addmm_`), and the column sums
/// of `grad` into `bias.grad()`, creating zero gradients first when there
/// are none. Autograd would instead allocate a weight-sized product per call
/// and, where the layer is used twice in one backward pass (a tower shared
/// by queries and passages), a weight-sized sum of the two before adding it
/// into `.grad`: for a 1024 x 1024 projection, 12 MiB of fresh memory per
/// micro-batch. As with `weighted_bag_sum`, these gradients do not pass
/// through autograd: hooks on the weight and bias do not run.
torch::Tensor accumulating_linear(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace contaccum::detail
