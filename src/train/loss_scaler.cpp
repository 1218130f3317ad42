#include "contaccum/train/loss_scaler.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>

#include <map>
#include <utility>

namespace contaccum {

const OptionTable<LossScalerOptions>& LossScalerOptions::fields() {
  using O = LossScalerOptions;
  static const OptionTable<O> table = {
      option_field<O>("init_scale", "the first loss scale", CONTACCUM_OPTION_ACCESSORS(init_scale), greater_than(0)),
      option_field<O>("growth_factor", "the scale's growth after growth_interval clean steps",
                      CONTACCUM_OPTION_ACCESSORS(growth_factor), greater_than(1)),
      option_field<O>("backoff_factor", "the scale's factor after an overflow",
                      CONTACCUM_OPTION_ACCESSORS(backoff_factor), in_open_range(0, 1)),
      option_field<O>("growth_interval", "clean steps in a row before the scale grows",
                      CONTACCUM_OPTION_ACCESSORS(growth_interval), greater_than(0)),
      option_field<O>("min_scale", "a smaller scale stops the run", CONTACCUM_OPTION_ACCESSORS(min_scale),
                      greater_than(0)),
  };
  return table;
}

void LossScalerOptions::validate() const { check_option_fields(*this, fields(), "LossScalerOptions"); }

LossScaler::LossScaler(LossScalerOptions options) : options_(options), scale_(options.init_scale()) {
  options_.validate();
}

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  // Gradients by (device, dtype): CUDA gets ATen's fused check-and-unscale
  // (what GradScaler calls), other devices two plain passes.
  std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> groups;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    const auto& g = p.grad();
    groups[{g.device().str(), static_cast<int>(g.scalar_type())}].push_back(g);
  }
  bool found = false;
  for (auto& [key, grads] : groups) {
    const auto options = grads.front().options();
    if (options.device().is_cuda()) {
      auto found_inf = torch::zeros({1}, options.dtype(torch::kFloat));
      const auto inv_scale = torch::full({1}, 1.0 / scale_, options.dtype(torch::kFloat));
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
      found = found || found_inf.item<float>() != 0.0F;
      continue;
    }
    for (auto& g : grads) {
      // A sum of the absolute values is not finite exactly when an entry is
      // not (or when it overflows float64, which no fp16 gradient can).
      found = found || !std::isfinite(g.abs().sum(torch::kDouble).item<double>());
      g.mul_(1.0 / scale_);
    }
  }
  return found;
}

void LossScaler::update(bool overflowed) {
  if (overflowed) {
    scale_ *= options_.backoff_factor();
    growth_tracker_ = 0;
    overflow_steps_ += 1;
    TORCH_CHECK(scale_ >= options_.min_scale(), "LossScaler: the loss scale fell to ", scale_, " (below min_scale ",
                options_.min_scale(), ") after ", overflow_steps_,
                " overflowing steps: the gradients are not finite at any scale; check the data, lower the learning "
                "rate, or train in bf16");
    return;
  }
  if (++growth_tracker_ == options_.growth_interval()) {
    scale_ *= options_.growth_factor();
    growth_tracker_ = 0;
  }
}

void LossScaler::save(torch::serialize::OutputArchive& archive) const {
  archive.write("scale", torch::tensor(scale_, torch::kDouble));
  archive.write("growth_tracker", torch::tensor(growth_tracker_, torch::kLong));
  archive.write("overflow_steps", torch::tensor(overflow_steps_, torch::kLong));
}

void LossScaler::load(torch::serialize::InputArchive& archive) {
  torch::Tensor scale, tracker, overflows;
  archive.read("scale", scale);
  archive.read("growth_tracker", tracker);
  archive.read("overflow_steps", overflows);
  TORCH_CHECK(scale.numel() == 1 && tracker.numel() == 1 && overflows.numel() == 1,
              "LossScaler::load: scale, growth_tracker and overflow_steps must be scalars");
  const double s = scale.item<double>();
  TORCH_CHECK(std::isfinite(s) && s > 0, "LossScaler::load: the saved scale must be finite and > 0, got ", s);
  const auto t = tracker.item<int64_t>(), o = overflows.item<int64_t>();
  TORCH_CHECK(t >= 0 && t < options_.growth_interval() && o >= 0, "LossScaler::load: saved growth_tracker ", t,
              " / overflow_steps ", o, " out of range (growth_interval ", options_.growth_interval(), ")");
  scale_ = s;
  growth_tracker_ = t;
  overflow_steps_ = o;
}

}  // namespace contaccum
