#pragma once

#include "contaccum/core/option_table.h"

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
  /// `FusedAdamW` (one pass per parameter, no temporaries, the same numbers
  /// bit for bit) instead of `torch::optim::AdamW`. Default: true.
  TORCH_ARG(bool, fused) = true;
  /// Row-sparse (lazy) updates of embedding tables: the weights of the
  /// module's `torch::nn::Embedding` submodules are updated only in the rows
  /// with gradient each step (`FusedAdamW::set_row_sparse`, which states how
  /// that differs from AdamW). Needs `fused`. Default: false.
  TORCH_ARG(bool, row_sparse_embeddings) = false;

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<AdamWSetup>& fields();
  /// Throws, naming the field and its value, when one is out of range or
  /// `row_sparse_embeddings` is set without `fused`.
  void validate() const;
};

/// AdamW over `module`'s parameters in two groups: weight decay for the
/// matrices (linear and embedding weights), none for biases and LayerNorm
/// parameters. Those are told apart by shape: every parameter with fewer than
/// two dimensions is a bias or a normalisation scale (as in BERT's and GPT's
/// recipes), which also covers encoders with other parameter names. Group 0
/// decays, group 1 does not; a group without parameters is left out. The
/// optimizer is a `FusedAdamW` unless `setup.fused()` is false.
std::unique_ptr<torch::optim::AdamW> make_adamw(const torch::nn::Module& module, const AdamWSetup& setup = {});

/// The AdamW state of `param` in `optimizer` (`torch::optim::AdamW` or
/// `FusedAdamW`), or nullptr before its first step. Works across LibTorch
/// versions (whose optimizers key their state differently).
const torch::optim::AdamWParamState* adamw_state(const torch::optim::Optimizer& optimizer, const torch::Tensor& param);

/// Sets the gradient of every parameter of `optimizer` to zero in place,
/// keeping its memory for the next backward pass (which then adds into it
/// instead of allocating). `Optimizer::zero_grad()` does this in LibTorch
/// 1.13 and frees the gradients in 2.x; this does the same in both.
void zero_gradients(torch::optim::Optimizer& optimizer);

/// Sets the learning rate of every parameter group of `optimizer`.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace contaccum
