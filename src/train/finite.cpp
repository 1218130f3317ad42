#include "contaccum/train/finite.h"

#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include "contaccum/train/optimizer.h"

namespace contaccum {

bool all_finite(const torch::Tensor& t) {
  if (!t.defined() || t.numel() == 0 || !t.is_floating_point()) return true;
  torch::NoGradGuard no_grad;
  return torch::isfinite(t).all().item<bool>();
}

std::string first_non_finite(const torch::nn::Module& module, const std::string& prefix) {
  for (const auto& p : module.named_parameters()) {
    if (!all_finite(p.value())) return prefix + p.key();
  }
  for (const auto& b : module.named_buffers()) {
    if (!all_finite(b.value())) return prefix + b.key();
  }
  return "";
}

std::string first_non_finite(const torch::optim::Optimizer& optimizer, const std::string& prefix) {
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto* adam = adamw_state(optimizer, params[i]);
      if (adam == nullptr) continue;
      const auto where = prefix + " group " + std::to_string(g) + " parameter " + std::to_string(i);
      if (!all_finite(adam->exp_avg())) return where + " exp_avg";
      if (!all_finite(adam->exp_avg_sq())) return where + " exp_avg_sq";
      if (!all_finite(adam->max_exp_avg_sq())) return where + " max_exp_avg_sq";
    }
  }
  return "";
}

}  // namespace contaccum
