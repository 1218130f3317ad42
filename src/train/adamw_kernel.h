#pragma once

// The element-wise arithmetic of FusedAdamW, apart from its bookkeeping.
// Internal to src/train/.

#include <ATen/core/Tensor.h>

namespace contaccum::detail {

/// One step's scalars, computed in double exactly as torch::optim::AdamW
/// computes them; the kernel rounds each to the parameter's dtype where
/// AdamW's tensor operations do.
struct AdamWStepScalars {
  double decay = 1.0;  ///< 1 - lr * weight_decay (applied only when weight_decay != 0)
  bool apply_decay = false;
  double beta1 = 0.9;
  double one_minus_beta1 = 0.1;
  double beta2 = 0.999;
  double one_minus_beta2 = 0.001;
  double sqrt_bias_correction2 = 1.0;
  double eps = 1e-8;
  double neg_step_size = 0.0;  ///< -lr / bias_correction1
};

/// Updates every element of `param`, `exp_avg` and `exp_avg_sq` from `grad`
/// in one pass. All four contiguous, of one floating dtype and shape.
void adamw_update_dense(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                        const at::Tensor& exp_avg_sq, const AdamWStepScalars& scalars);

/// The same update restricted to the rows `rows` (int64, sorted, unique) of
/// 2-d tensors; the other rows are not read or written.
void adamw_update_rows(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                       const at::Tensor& exp_avg_sq, const at::Tensor& rows, const AdamWStepScalars& scalars);

/// The sorted indices of the rows of the 2-d `grad` that hold a non-zero.
at::Tensor rows_with_gradient(const at::Tensor& grad);

}  // namespace contaccum::detail
