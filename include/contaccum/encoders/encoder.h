#pragma once

#include "contaccum/core/encoder_input.h"

#include <torch/nn/module.h>
#include <torch/types.h>

namespace contaccum {

/// Base class of every encoder the dual encoder can hold.
///
/// Derive from it, register your parameters and submodules as with any
/// `torch::nn::Module`, and implement `forward` to map a batch of inputs to
/// `[batch, output_dim()]` floating-point representations on the device of the
/// module's parameters.
///
/// GradCache and ContAccum-over-GradCache encode every micro-batch twice and
/// replay the random number generator state between the passes, so `forward`
/// must draw random numbers only from the global (default) generators, as
/// `torch::dropout` does. `contaccum::testing::check_encoder` verifies this.
class EncoderModule : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;
  /// Encodes `input` into `[input.size(), output_dim()]`.
  virtual torch::Tensor forward(const EncoderInput& input) = 0;
  /// Width of the representations `forward` returns.
  virtual int64_t output_dim() const = 0;
};

}  // namespace contaccum
