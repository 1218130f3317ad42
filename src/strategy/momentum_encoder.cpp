#include "contaccum/strategy/momentum_encoder.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <cmath>
#include <string>

namespace contaccum {

MomentumEncoder::MomentumEncoder(double momentum) : momentum_(momentum) {
  TORCH_CHECK(std::isfinite(momentum) && momentum >= 0.0 && momentum < 1.0,
              "MomentumEncoder: momentum must be in [0, 1), got ", momentum);
}

void MomentumEncoder::initialize(const DualEncoderImpl& model) {
  torch::NoGradGuard no_grad;
  weights_.clear();
  for (const auto& p : model.parameters()) weights_.push_back(p.detach().clone());
}

void MomentumEncoder::update(const DualEncoderImpl& model) {
  if (!initialized()) {
    initialize(model);
    return;
  }
  torch::NoGradGuard no_grad;
  const auto params = model.parameters();
  TORCH_CHECK(params.size() == weights_.size(), "MomentumEncoder::update: the model has ", params.size(),
              " parameters, the average ", weights_.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (momentum_ == 0.0) {
      weights_[i].copy_(params[i]);
    } else {
      weights_[i].mul_(momentum_).add_(params[i].detach(), 1.0 - momentum_);
    }
  }
}

MomentumEncoder::Swap::Swap(MomentumEncoder& ema, DualEncoderImpl& model) : params_(model.parameters()) {
  TORCH_CHECK(ema.initialized(), "MomentumEncoder::Swap: the average is not initialized (call update first)");
  TORCH_CHECK(params_.size() == ema.weights_.size(), "MomentumEncoder::Swap: the model has ", params_.size(),
              " parameters, the average ", ema.weights_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    saved_.push_back(params_[i].data());
    params_[i].set_data(ema.weights_[i]);
  }
}

MomentumEncoder::Swap::~Swap() {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].set_data(saved_[i]);
}

void MomentumEncoder::save(torch::serialize::OutputArchive& archive) const {
  archive.write("momentum", torch::tensor(momentum_, torch::kDouble));
  archive.write("count", torch::tensor(static_cast<int64_t>(weights_.size()), torch::kLong));
  for (size_t i = 0; i < weights_.size(); ++i) archive.write("w" + std::to_string(i), weights_[i].cpu());
}

void MomentumEncoder::load(torch::serialize::InputArchive& archive, const DualEncoderImpl& model) {
  torch::Tensor count, momentum;
  archive.read("momentum", momentum);
  TORCH_CHECK(momentum.item<double>() == momentum_, "MomentumEncoder::load: the checkpoint's momentum is ",
              momentum.item<double>(), ", this run's ", momentum_, " (resume with the same momentum)");
  archive.read("count", count);
  const auto params = model.parameters();
  const int64_t n = count.item<int64_t>();
  weights_.clear();
  if (n == 0) return;  // saved before the first step
  TORCH_CHECK(n == static_cast<int64_t>(params.size()), "MomentumEncoder::load: the checkpoint holds ", n,
              " averaged tensors, the model has ", params.size(), " parameters");
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor w;
    archive.read("w" + std::to_string(i), w);
    const auto& p = params[static_cast<size_t>(i)];
    TORCH_CHECK(w.sizes() == p.sizes() && w.scalar_type() == p.scalar_type(), "MomentumEncoder::load: averaged tensor ",
                i, " is ", w.sizes(), " ", w.scalar_type(), ", the parameter ", p.sizes(), " ", p.scalar_type());
    weights_.push_back(w.to(p.device()).clone());
  }
}

}  // namespace contaccum
