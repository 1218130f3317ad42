#pragma once

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <memory>

namespace contaccum {

/// Options of `make_adamw`.
struct AdamWSetup {
  /// Initial learning rate (a schedule usually overrides it every step).
  /// Default: 2e-5 (the ContAccum code's).
  TORCH_ARG(double, lr) = 2e-5;
  /// Decoupled weight decay of the matrices. Default: 0.01.
  TORCH_ARG(double, weight_decay) = 0.01;
  /// Default: 0.9.
  TORCH_ARG(double, beta1) = 0.9;
  /// Default: 0.999.
  TORCH_ARG(double, beta2) = 0.999;
  /// Default: 1e-8.
  TORCH_ARG(double, eps) = 1e-8;
};

/// AdamW over `module`'s parameters in two groups: weight decay for the
/// matrices (linear and embedding weights), none for biases and LayerNorm
/// parameters. Those are told apart by shape: every parameter with fewer than
/// two dimensions is a bias or a normalisation scale (as in BERT's and GPT's
/// recipes), which also covers encoders with other parameter names. Group 0
/// decays, group 1 does not; a group without parameters is left out.
std::unique_ptr<torch::optim::AdamW> make_adamw(const torch::nn::Module& module, const AdamWSetup& setup = {});

/// Sets the learning rate of every parameter group of `optimizer`.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace contaccum
