#include "contaccum/train/fused_adamw.h"

#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <memory>

#include "adamw_kernel.h"
#include "contaccum/core/torch_compat.h"

namespace contaccum {
namespace {

// One AdamW update as torch::optim::AdamW::step writes it, in in-place
// tensor operations (any device).
void update_with_tensor_ops(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& exp_avg,
                            const torch::Tensor& exp_avg_sq, const detail::AdamWStepScalars& s) {
  if (s.apply_decay) param.mul_(s.decay);
  exp_avg.mul_(s.beta1).add_(grad, s.one_minus_beta1);
  exp_avg_sq.mul_(s.beta2).addcmul_(grad, grad, s.one_minus_beta2);
  const auto denom = (exp_avg_sq.sqrt() / s.sqrt_bias_correction2).add_(s.eps);
  param.addcdiv_(exp_avg, denom, s.neg_step_size);
}

}  // namespace

torch::optim::AdamWParamState& FusedAdamW::state_of(const torch::Tensor& param) {
  auto& state = this->state();
  const auto key = detail::optimizer_state_key(state, param);
  auto it = state.find(key);
  if (it == state.end()) {
    auto fresh = std::make_unique<torch::optim::AdamWParamState>();
    fresh->step(0);
    fresh->exp_avg(at::zeros_like(param, at::MemoryFormat::Preserve));
    fresh->exp_avg_sq(at::zeros_like(param, at::MemoryFormat::Preserve));
    it = state.emplace(key, std::move(fresh)).first;
  }
  return static_cast<torch::optim::AdamWParamState&>(*it->second);
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  c10::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    c10::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    TORCH_CHECK(!options.amsgrad(), "FusedAdamW does not implement amsgrad; use torch::optim::AdamW for it");
    const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    for (auto& param : group.params()) {
      const auto& grad = param.grad();
      if (!grad.defined()) continue;
      TORCH_CHECK(!grad.is_sparse(),
                  "FusedAdamW does not support sparse gradients (use set_row_sparse with a dense "
                  "gradient instead)");
      auto& state = state_of(param);
      state.step(state.step() + 1);
      // The scalars exactly as torch::optim::AdamW::step computes them.
      detail::AdamWStepScalars s;
      s.apply_decay = options.weight_decay() != 0;
      s.decay = 1 - options.lr() * options.weight_decay();
      s.beta1 = beta1;
      s.one_minus_beta1 = 1 - beta1;
      s.beta2 = beta2;
      s.one_minus_beta2 = 1 - beta2;
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      s.sqrt_bias_correction2 = std::sqrt(bias_correction2);
      s.eps = options.eps();
      s.neg_step_size = -(options.lr() / bias_correction1);
      const bool fused_loop = param.device().is_cpu() && param.is_contiguous() &&
                              (param.scalar_type() == torch::kFloat || param.scalar_type() == torch::kDouble);
      if (!fused_loop) {
        // Off the CPU (CUDA), or a bf16 / fp16 / strided CPU parameter:
        // torch::optim::AdamW's own sequence of in-place kernels; the fused
        // loop is a CPU kernel for contiguous float32 and float64.
        TORCH_CHECK(!is_row_sparse(param),
                    "FusedAdamW: row-sparse updates run on contiguous float32 or float64 CPU parameters only, got ",
                    param.scalar_type(), " on ", param.device());
        update_with_tensor_ops(param, grad, state.exp_avg(), state.exp_avg_sq(), s);
        continue;
      }
      const auto contiguous_grad = grad.contiguous();
      if (is_row_sparse(param)) {
        detail::adamw_update_rows(param, contiguous_grad, state.exp_avg(), state.exp_avg_sq(),
                                  detail::rows_with_gradient(contiguous_grad), s);
      } else {
        detail::adamw_update_dense(param, contiguous_grad, state.exp_avg(), state.exp_avg_sq(), s);
      }
    }
  }
  return loss;
}

void FusedAdamW::set_row_sparse(const torch::Tensor& param, bool row_sparse) {
  TORCH_CHECK(param.dim() == 2, "FusedAdamW::set_row_sparse: the parameter must be 2-d, got ", param.sizes());
  bool found = false;
  for (const auto& group : param_groups()) {
    for (const auto& p : group.params()) found = found || p.unsafeGetTensorImpl() == param.unsafeGetTensorImpl();
  }
  TORCH_CHECK(found, "FusedAdamW::set_row_sparse: the tensor is not one of this optimizer's parameters");
  if (row_sparse) {
    row_sparse_.insert(param.unsafeGetTensorImpl());
  } else {
    row_sparse_.erase(param.unsafeGetTensorImpl());
  }
}

bool FusedAdamW::is_row_sparse(const torch::Tensor& param) const {
  return row_sparse_.count(param.unsafeGetTensorImpl()) > 0;
}

}  // namespace contaccum
