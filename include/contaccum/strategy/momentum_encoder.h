#pragma once

#include "contaccum/model/dual_encoder.h"

#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <vector>

namespace contaccum {

/// An exponential moving average of a dual encoder's parameters (MoCo's key
/// encoder): after each optimizer step `ema = momentum * ema + (1 - momentum)
/// * parameter`, per tensor, elementwise (with momentum 0 the average is a
/// copy of the parameters, bit for bit).
///
/// It holds weights only, not a second module: `Swap` puts the averages into
/// the model's own parameters for the duration of a forward pass (an O(1)
/// exchange of each parameter's data, no copy) and back, so it works for any
/// encoder, cloneable or not. Buffers (none in the built-in encoders) are the
/// model's own.
class MomentumEncoder {
 public:
  /// `momentum` in [0, 1).
  explicit MomentumEncoder(double momentum);

  /// True once the averages exist (the first `update`, or `load`).
  bool initialized() const { return !weights_.empty(); }
  /// Starts the averages at the model's current parameters (a copy).
  void initialize(const DualEncoderImpl& model);
  /// One step of the average towards the model's current parameters;
  /// initializes it first when it does not exist yet.
  void update(const DualEncoderImpl& model);
  double momentum() const { return momentum_; }
  /// The averages, in the order of `model.parameters()`.
  const std::vector<torch::Tensor>& weights() const { return weights_; }

  /// While it lives, the model's parameters hold the averages. Use it under
  /// `torch::NoGradGuard`, with no autograd graph of the model alive.
  class Swap {
   public:
    Swap(MomentumEncoder& ema, DualEncoderImpl& model);
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    std::vector<torch::Tensor> params_, saved_;
  };

  /// Writes the averages (on the CPU) into `archive`.
  void save(torch::serialize::OutputArchive& archive) const;
  /// Restores what `save` wrote onto `model`'s devices; throws when the
  /// number or the shapes of the tensors do not match the model.
  void load(torch::serialize::InputArchive& archive, const DualEncoderImpl& model);

 private:
  double momentum_;
  std::vector<torch::Tensor> weights_;
};

}  // namespace contaccum
