#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <string>

namespace contaccum {

/// True when every element of `t` is finite (an undefined tensor is).
bool all_finite(const torch::Tensor& t);

/// The name of the first parameter or buffer of `module` that holds a NaN or
/// an infinity, prefixed by `prefix`; empty when every one is finite.
std::string first_non_finite(const torch::nn::Module& module, const std::string& prefix = "");

/// The same for an optimizer's state (AdamW's moments; other optimizers'
/// state is not inspected), naming the parameter group and index.
std::string first_non_finite(const torch::optim::Optimizer& optimizer, const std::string& prefix = "optimizer");

}  // namespace contaccum
