#pragma once

#include "contaccum/core/option_table.h"

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <utility>
#include <vector>

namespace contaccum {

/// A floating-point format: the towers' compute type under autocast
/// (`StrategyOptions::precision`) or the banks' storage type
/// (`StrategyOptions::bank_dtype`).
enum class Precision {
  /// IEEE single precision: no autocast; every exact equality of the spec.
  Fp32,
  /// bfloat16: float32's range, 8 bits of mantissa. Autocast on the CPU and
  /// CUDA.
  Bf16,
  /// IEEE half precision: 11 bits of mantissa, range up to 65504; needs a
  /// loss scaler (`LossScaler`). Autocast on CUDA only.
  Fp16,
};

/// "fp32", "bf16", "fp16".
template <>
const std::vector<std::pair<Precision, std::string>>& enum_names<Precision>();

/// The tensor dtype of `precision` (float, bfloat16, half).
c10::ScalarType scalar_type(Precision precision);

/// The most negative finite value of a floating `type` (float's lowest
/// overflows bf16 and fp16): what masks that must stay finite write, and
/// where a running maximum that has seen only -inf is held. Throws for a
/// type that is not floating.
double lowest_finite(c10::ScalarType type);

/// Whether LibTorch autocasts `precision` on devices of `type` (fp32: always
/// true, it needs no autocast; bf16 on the CPU and CUDA; fp16 on CUDA).
bool autocast_supported(c10::DeviceType type, Precision precision);

/// Runs the enclosed tower passes under autocast to `precision` on devices of
/// `type`, as `torch.autocast(device_type, dtype)` does in Python: enables
/// it with that dtype, counts the nesting, and on leaving restores the
/// state it found (clearing autocast's weight cache when the outermost
/// guard leaves). `Precision::Fp32` does nothing: the enclosed code runs
/// exactly as without a guard. Throws when `autocast_supported` is false.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType type, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType type_;
  bool active_ = false, was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

/// Whether autocast is enabled for devices of `type` right now, and to
/// which dtype (for tests and for replays that must match a first pass).
bool autocast_enabled(c10::DeviceType type);
c10::ScalarType autocast_dtype(c10::DeviceType type);

}  // namespace contaccum
