#pragma once

// The one home of differences between the LibTorch versions contaccum builds
// against (Debian 12's 1.13 and the 2.x releases). Not part of the API
// (namespace detail): the library's sources use it, its public headers do
// not include it.

#include <c10/core/Allocator.h>
#include <c10/core/TensorImpl.h>
#include <torch/optim/optimizer.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace contaccum::detail {

/// The key of a parameter's entry in `torch::optim::Optimizer::state()`:
/// LibTorch 1.13 keys the state by the parameter's TensorImpl address
/// written as text (`c10::guts::to_string`), 2.x by the address itself.
template <typename StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap& /*unused*/, const at::Tensor& param) {
  using Key = typename StateMap::key_type;
  c10::TensorImpl* impl = param.unsafeGetTensorImpl();
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;  // what c10::guts::to_string(impl) wrote
    text << static_cast<void*>(impl);
    return text.str();
  } else {
    return static_cast<Key>(impl);
  }
}

/// The optimizer state of `param`, or nullptr when it has none yet.
template <typename Optimizer>
auto* find_optimizer_state(Optimizer& optimizer, const at::Tensor& param) {
  auto& state = optimizer.state();
  const auto it = state.find(optimizer_state_key(state, param));
  return it == state.end() ? nullptr : it->second.get();
}

}  // namespace contaccum::detail

namespace contaccum::detail {

template <typename Method>
struct ThirdParameter;
template <typename Class, typename Result, typename A1, typename A2, typename A3, typename A4, typename A5>
struct ThirdParameter<Result (Class::*)(A1, A2, A3, A4, A5)> {
  using type = A3;
};

/// The type of the totals `c10::MemoryReportingInfoBase::reportMemoryUsage`
/// receives: int64_t in LibTorch 1.13, size_t in 2.x.
using MemoryReportTotal = typename ThirdParameter<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::type;

}  // namespace contaccum::detail
