#include "contaccum/train/optimizer.h"

#include <torch/nn/modules/embedding.h>

#include <cmath>

#include "contaccum/core/torch_compat.h"
#include "contaccum/train/fused_adamw.h"

namespace contaccum {

std::unique_ptr<torch::optim::AdamW> make_adamw(const torch::nn::Module& module, const AdamWSetup& setup) {
  TORCH_CHECK(setup.lr() >= 0 && std::isfinite(setup.lr()), "AdamWSetup::lr must be >= 0, got ", setup.lr());
  TORCH_CHECK(setup.weight_decay() >= 0, "AdamWSetup::weight_decay must be >= 0, got ", setup.weight_decay());
  TORCH_CHECK(setup.beta1() >= 0 && setup.beta1() < 1, "AdamWSetup::beta1 must be in [0, 1), got ", setup.beta1());
  TORCH_CHECK(setup.beta2() >= 0 && setup.beta2() < 1, "AdamWSetup::beta2 must be in [0, 1), got ", setup.beta2());
  TORCH_CHECK(setup.eps() > 0, "AdamWSetup::eps must be > 0, got ", setup.eps());
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : module.parameters()) {
    if (!p.requires_grad()) continue;
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(setup.lr()).betas({setup.beta1(), setup.beta2()}).eps(setup.eps()).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, options(setup.weight_decay()));
  if (!no_decay.empty()) groups.emplace_back(no_decay, options(0.0));
  TORCH_CHECK(!groups.empty(), "make_adamw: the module has no trainable parameters");
  TORCH_CHECK(setup.fused() || !setup.row_sparse_embeddings(),
              "AdamWSetup::row_sparse_embeddings needs fused = true (torch::optim::AdamW has no row-sparse update)");
  if (!setup.fused()) return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(setup.lr()));
  auto fused = std::make_unique<FusedAdamW>(groups, torch::optim::AdamWOptions(setup.lr()));
  if (setup.row_sparse_embeddings()) {
    for (const auto& child : module.modules(/*include_self=*/true)) {
      if (const auto* embedding = child->as<torch::nn::EmbeddingImpl>()) {
        if (embedding->weight.requires_grad()) fused->set_row_sparse(embedding->weight);
      }
    }
  }
  return fused;
}

const torch::optim::AdamWParamState* adamw_state(const torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  const auto* state = detail::find_optimizer_state(optimizer, param);
  return dynamic_cast<const torch::optim::AdamWParamState*>(state);
}

void zero_gradients(torch::optim::Optimizer& optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      auto& grad = p.mutable_grad();
      if (!grad.defined()) continue;
      grad.detach_();
      grad.zero_();
    }
  }
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace contaccum
