#pragma once

#include <torch/arg.h>

#include <cstdint>

namespace contaccum {

/// Options of `LinearSchedule`.
struct LinearScheduleOptions {
  LinearScheduleOptions(double peak_lr, int64_t total_steps) : peak_lr_(peak_lr), total_steps_(total_steps) {}
  /// Learning rate at the end of the warm-up. Required, > 0.
  TORCH_ARG(double, peak_lr);
  /// Optimizer steps of the whole run. Required, > 0.
  TORCH_ARG(int64_t, total_steps);
  /// Steps of linear warm-up from 0. Default: 0.
  TORCH_ARG(int64_t, warmup_steps) = 0;
  /// Learning rate at `total_steps` as a fraction of `peak_lr`, in [0, 1]:
  /// the decay runs linearly from the peak down to it. Default: 0 (decay to
  /// 0, Hugging Face's schedule, bit for bit).
  TORCH_ARG(double, final_lr_ratio) = 0.0;
};

/// Linear warm-up, then linear decay to 0 at `total_steps`: Hugging Face's
/// `get_linear_schedule_with_warmup`, which DPR and the ContAccum code use
/// (or to `final_lr_ratio x peak_lr`: a short run that should not spend its
/// last steps at a learning rate too small to move).
/// With a warm-up the very first step runs at learning rate 0, as there.
class LinearSchedule {
 public:
  /// Throws, naming the option, on a non-positive `peak_lr` or `total_steps`
  /// or a negative `warmup_steps`.
  explicit LinearSchedule(LinearScheduleOptions options);
  /// Learning rate of the optimizer step that follows `completed_steps`
  /// steps (0 for the first step).
  double lr(int64_t completed_steps) const;
  const LinearScheduleOptions& options() const { return options_; }

 private:
  LinearScheduleOptions options_;
};

}  // namespace contaccum
