#include "backends.h"

#include "contaccum/core/torch_compat.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <chrono>

namespace contaccum::detail {

c10::intrusive_ptr<c10d::ProcessGroup> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                                       int64_t world_size, const DistributedOptions& options) {
  auto gloo = c10d::ProcessGroupGloo::Options::create();
  gloo->timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds() * 1000.0));
  // Loopback for one machine; a hostname lookup otherwise, as torch does.
  gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  const auto backend =
      c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(world_size), gloo);
  return process_group_over<c10d::ProcessGroup>(backend, store, static_cast<int>(rank), static_cast<int>(world_size),
                                                "gloo", c10::DeviceType::CPU, gloo->timeout);
}

}  // namespace contaccum::detail
