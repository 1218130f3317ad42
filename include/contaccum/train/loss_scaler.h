#pragma once

#include "contaccum/core/option_table.h"

#include <torch/arg.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace contaccum {

/// Options of `LossScaler` (the defaults are PyTorch's `GradScaler`'s).
struct LossScalerOptions {
  /// The first scale. Must be > 0. Default: 65536 (2^16).
  TORCH_ARG(double, init_scale) = 65536.0;
  /// The scale is multiplied by this after `growth_interval` clean steps in a
  /// row. Must be > 1. Default: 2.
  TORCH_ARG(double, growth_factor) = 2.0;
  /// ... and by this after a step whose gradients overflowed. Must be in
  /// (0, 1). Default: 0.5.
  TORCH_ARG(double, backoff_factor) = 0.5;
  /// Clean steps in a row before the scale grows. Must be >= 1. Default: 2000.
  TORCH_ARG(int64_t, growth_interval) = 2000;
  /// A scale below this stops the run: gradients that overflow at every
  /// scale are not an overflow but non-finite numbers (check the data and the
  /// learning rate). Must be > 0. Default: 2^-24.
  TORCH_ARG(double, min_scale) = 1.0 / 16777216.0;

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<LossScalerOptions>& fields();
  /// Throws, naming the option and its value, when one is out of range.
  void validate() const;
};

/// A dynamic loss scaler for fp16 training, as PyTorch's `GradScaler`:
/// the loss is multiplied by `scale()` before its backward pass (so that
/// small fp16 gradients do not flush to zero), the gradients are divided by
/// it before anything reads them, and a step whose gradients overflowed is
/// skipped and the scale backed off; `growth_interval` clean steps in a row
/// grow it. `TrainingStep` runs it when the strategy's precision is fp16 (or
/// when asked). Under GradCache the cached representation gradients carry
/// the scale too: they are the scaled loss's gradients, and so are the
/// parameter gradients the replay accumulates until `unscale` divides them.
class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions options = {});

  double scale() const { return scale_; }
  /// Clean steps in a row since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_; }
  /// Steps skipped because their scaled gradients overflowed.
  int64_t overflow_steps() const { return overflow_steps_; }

  /// Divides every defined gradient of `params` by `scale()` in place and
  /// returns whether any entry was not finite (before or after). A float64
  /// reduction; on CUDA one fused kernel per dtype and device.
  bool unscale(const std::vector<torch::Tensor>& params) const;
  /// After a step: an overflow backs the scale off (and counts the step),
  /// `growth_interval` clean steps in a row grow it. Throws when the scale
  /// falls below `min_scale`.
  void update(bool overflowed);

  /// Writes / restores the scale, the growth tracker and the overflow count
  /// (checkpoints: a resumed run scales exactly as the straight one).
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

  const LossScalerOptions& options() const { return options_; }

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0, overflow_steps_ = 0;
};

}  // namespace contaccum
