#pragma once

// The most negative finite value of a floating type, for masks that must
// stay finite in bf16 and fp16 too. Internal to src/encoders/.

#include <ATen/Dispatch.h>
#include <torch/types.h>

#include <limits>

namespace contaccum::detail {

inline double lowest_value(torch::ScalarType dtype) {
  double lowest = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kHalf, torch::kBFloat16, dtype, "lowest_value",
                                  [&] { lowest = static_cast<double>(std::numeric_limits<scalar_t>::lowest()); });
  return lowest;
}

}  // namespace contaccum::detail
