#include "contaccum/train/optimizer.h"

#include <torch/nn/modules/embedding.h>

#include <cmath>
#include <cstring>

#include "contaccum/core/helper_thread.h"
#include "contaccum/core/torch_compat.h"
#include "contaccum/train/fused_adamw.h"

namespace contaccum {

const OptionTable<AdamWSetup>& AdamWSetup::fields() {
  using O = AdamWSetup;
  static const OptionTable<O> table = {
      option_field<O>("lr", "the peak learning rate", CONTACCUM_OPTION_ACCESSORS(lr), greater_than(0)),
      option_field<O>("weight_decay", "decoupled weight decay of the matrices",
                      CONTACCUM_OPTION_ACCESSORS(weight_decay), at_least(0)),
      option_field<O>("beta1", "AdamW's first-moment decay", CONTACCUM_OPTION_ACCESSORS(beta1),
                      in_half_open_range(0, 1)),
      option_field<O>("beta2", "AdamW's second-moment decay", CONTACCUM_OPTION_ACCESSORS(beta2),
                      in_half_open_range(0, 1)),
      option_field<O>("eps", "AdamW's epsilon", CONTACCUM_OPTION_ACCESSORS(eps), greater_than(0)),
      // Bit for bit the same numbers either way.
      option_field<O>("fused", "AdamW in one pass per parameter (FusedAdamW) instead of torch::optim::AdamW",
                      CONTACCUM_OPTION_ACCESSORS(fused), {}, /*changes_results=*/false),
      option_field<O>("row_sparse_embeddings", "lazy, row-sparse AdamW updates of embedding tables",
                      CONTACCUM_OPTION_ACCESSORS(row_sparse_embeddings)),
  };
  return table;
}

void AdamWSetup::validate() const {
  check_option_fields(*this, fields(), "AdamWSetup");
  TORCH_CHECK(fused() || !row_sparse_embeddings(),
              "AdamWSetup::row_sparse_embeddings needs fused = true (torch::optim::AdamW has no row-sparse update)");
}

std::unique_ptr<torch::optim::AdamW> make_adamw(const torch::nn::Module& module, const AdamWSetup& setup) {
  setup.validate();
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

namespace {

// A large CPU gradient (the embedding table's) is zeroed by the caller and
// the helper thread together: zero bytes are +0.0, as `zero_()` writes.
void zero_in_place(torch::Tensor& grad) {
  constexpr int64_t kBytesPerChunk = int64_t{1} << 20;
  const int64_t bytes = grad.numel() * static_cast<int64_t>(grad.element_size());
  if (!grad.device().is_cpu() || grad.is_sparse() || !grad.is_contiguous() || bytes < 2 * kBytesPerChunk) {
    grad.zero_();
    return;
  }
  auto* data = static_cast<char*>(grad.data_ptr());
  share_out_ranges(bytes, kBytesPerChunk,
                   [&](int64_t begin, int64_t end) { std::memset(data + begin, 0, static_cast<size_t>(end - begin)); });
  grad.unsafeGetTensorImpl()->bump_version();  // as the in-place zero_() would
}

}  // namespace

void zero_gradients(torch::optim::Optimizer& optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      auto& grad = p.mutable_grad();
      if (!grad.defined()) continue;
      grad.detach_();
      zero_in_place(grad);
    }
  }
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace contaccum
