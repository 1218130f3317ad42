#pragma once

// The one home of differences between the LibTorch versions contaccum builds
// against (Debian 12's 1.13 and the 2.x releases). Not part of the API
// (namespace detail): the library's sources use it, its public headers do
// not include it.

#include <ATen/autocast_mode.h>
#include <c10/core/Allocator.h>
#include <c10/core/TensorImpl.h>
#include <torch/optim/optimizer.h>
#include <torch/version.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

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

namespace contaccum::detail {

template <typename T, typename = void>
struct HasUseLibUV : std::false_type {};
template <typename T>
struct HasUseLibUV<T, std::void_t<decltype(std::declval<T&>().useLibUV)>> : std::true_type {};

/// Asks `c10d::TCPStoreOptions` for the classic socket store. LibTorch 2.4
/// made the libuv store the default, and a LibTorch built without libuv
/// (Debian's) refuses it ("use_libuv was requested but PyTorch was build
/// without libuv support"); both speak the same protocol, so a classic
/// client meets either server. 1.13 has only the classic one.
template <typename TCPStoreOptions>
void use_classic_tcp_store(TCPStoreOptions& options) {
  if constexpr (HasUseLibUV<TCPStoreOptions>::value) options.useLibUV = false;
}

/// The c10d process group over `backend`. In LibTorch 1.13 a backend
/// (`ProcessGroupGloo`, `ProcessGroupNCCL`) is itself the process group; from
/// 2.0 it is a `c10d::Backend` registered under a `c10d::ProcessGroup` for a
/// device type (`backend_name` "gloo" or "nccl"), made with the store in 2.6
/// and later and with an `Options` of the name and timeout before.
template <typename ProcessGroup, typename Backend, typename Store, typename Timeout>
c10::intrusive_ptr<ProcessGroup> process_group_over(const c10::intrusive_ptr<Backend>& backend,
                                                    const c10::intrusive_ptr<Store>& store, int rank, int size,
                                                    const std::string& backend_name, c10::DeviceType device,
                                                    Timeout timeout) {
  if constexpr (std::is_base_of_v<ProcessGroup, Backend>) {
    (void)store, (void)rank, (void)size, (void)backend_name, (void)device, (void)timeout;
    return backend;
  } else {
    c10::intrusive_ptr<ProcessGroup> group;
    if constexpr (std::is_constructible_v<ProcessGroup, c10::intrusive_ptr<Store>, int, int>) {
      (void)timeout;
      group = c10::make_intrusive<ProcessGroup>(store, rank, size);
    } else {
      using Options = typename ProcessGroup::Options;
      group = c10::make_intrusive<ProcessGroup>(store, rank, size, c10::make_intrusive<Options>(backend_name, timeout));
    }
    const auto type = ProcessGroup::strToBackendType(backend_name);
    group->setBackend(device, type, backend);
    group->setDefaultBackend(type);
    return group;
  }
}

}  // namespace contaccum::detail

namespace contaccum::detail {

// Autocast's per-device switch and dtype: one call taking the device type
// from LibTorch 2.4, one function per device type before (1.13: CPU and
// CUDA, the latter named without a device).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool autocast_is_enabled(c10::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
inline void autocast_set_enabled(c10::DeviceType type, bool on) { at::autocast::set_autocast_enabled(type, on); }
inline c10::ScalarType autocast_get_dtype(c10::DeviceType type) { return at::autocast::get_autocast_dtype(type); }
inline void autocast_set_dtype(c10::DeviceType type, c10::ScalarType dtype) {
  at::autocast::set_autocast_dtype(type, dtype);
}
#else
inline bool autocast_is_enabled(c10::DeviceType type) {
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
inline void autocast_set_enabled(c10::DeviceType type, bool on) {
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
}
inline c10::ScalarType autocast_get_dtype(c10::DeviceType type) {
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
}
inline void autocast_set_dtype(c10::DeviceType type, c10::ScalarType dtype) {
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}
#endif

}  // namespace contaccum::detail
