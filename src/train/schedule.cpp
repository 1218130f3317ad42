#include "contaccum/train/schedule.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace contaccum {

LinearSchedule::LinearSchedule(LinearScheduleOptions options) : options_(options) {
  TORCH_CHECK(options.peak_lr() > 0 && std::isfinite(options.peak_lr()),
              "LinearScheduleOptions::peak_lr must be > 0, got ", options.peak_lr());
  TORCH_CHECK(options.total_steps() > 0, "LinearScheduleOptions::total_steps must be > 0, got ", options.total_steps());
  TORCH_CHECK(options.warmup_steps() >= 0, "LinearScheduleOptions::warmup_steps must be >= 0, got ",
              options.warmup_steps());
  TORCH_CHECK(options.final_lr_ratio() >= 0 && options.final_lr_ratio() <= 1,
              "LinearScheduleOptions::final_lr_ratio must be in [0, 1], got ", options.final_lr_ratio());
}

double LinearSchedule::lr(int64_t completed_steps) const {
  const auto s = static_cast<double>(completed_steps);
  const auto warmup = static_cast<double>(options_.warmup_steps());
  const auto total = static_cast<double>(options_.total_steps());
  if (s < warmup) return options_.peak_lr() * s / std::max(1.0, warmup);
  // With final_lr_ratio 0 this is HF's expression exactly (0 + 1 * x == x).
  const double r = options_.final_lr_ratio();
  return options_.peak_lr() * (r + (1.0 - r) * std::max(0.0, (total - s) / std::max(1.0, total - warmup)));
}

}  // namespace contaccum
