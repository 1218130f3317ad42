#include "contaccum/core/precision.h"

#include "contaccum/core/torch_compat.h"

#include <ATen/Dispatch.h>

#include <limits>

#include <c10/util/Exception.h>

namespace contaccum {

template <>
const std::vector<std::pair<Precision, std::string>>& enum_names<Precision>() {
  static const std::vector<std::pair<Precision, std::string>> names = {
      {Precision::Fp32, "fp32"}, {Precision::Bf16, "bf16"}, {Precision::Fp16, "fp16"}};
  return names;
}

c10::ScalarType scalar_type(Precision precision) {
  switch (precision) {
    case Precision::Bf16:
      return c10::ScalarType::BFloat16;
    case Precision::Fp16:
      return c10::ScalarType::Half;
    case Precision::Fp32:
      break;
  }
  return c10::ScalarType::Float;
}

double lowest_finite(c10::ScalarType type) {
  double lowest = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(c10::kHalf, c10::kBFloat16, type, "lowest_finite",
                                  [&] { lowest = static_cast<double>(std::numeric_limits<scalar_t>::lowest()); });
  return lowest;
}

bool autocast_supported(c10::DeviceType type, Precision precision) {
  if (precision == Precision::Fp32) return true;
  if (type == c10::DeviceType::CUDA) return true;
  // LibTorch's CPU autocast casts to bfloat16 (float16 on the CPU came with
  // 2.x kernels that not every build has).
  return type == c10::DeviceType::CPU && precision == Precision::Bf16;
}

bool autocast_enabled(c10::DeviceType type) { return detail::autocast_is_enabled(type); }
c10::ScalarType autocast_dtype(c10::DeviceType type) { return detail::autocast_get_dtype(type); }

AutocastGuard::AutocastGuard(c10::DeviceType type, Precision precision) : type_(type) {
  if (precision == Precision::Fp32) return;
  TORCH_CHECK(autocast_supported(type, precision), "precision ", enum_name(precision), " has no autocast on ",
              c10::DeviceTypeName(type, /*lower_case=*/true),
              " devices (bf16 runs on the CPU and CUDA, fp16 on CUDA only)");
  was_enabled_ = detail::autocast_is_enabled(type);
  was_dtype_ = detail::autocast_get_dtype(type);
  detail::autocast_set_enabled(type, true);
  detail::autocast_set_dtype(type, scalar_type(precision));
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // As torch.autocast's __exit__: the cast weights are cached for the
  // outermost region only.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  detail::autocast_set_enabled(type_, was_enabled_);
  detail::autocast_set_dtype(type_, was_dtype_);
}

}  // namespace contaccum
