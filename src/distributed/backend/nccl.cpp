// NCCL: compiled only where LibTorch is built with it (USE_C10D_NCCL).
// Untested here: Debian's LibTorch is CPU-only (docs/DISTRIBUTED.md).
#include "backends.h"

#include "contaccum/core/torch_compat.h"

#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>

namespace contaccum {

bool nccl_available() {
#ifdef USE_C10D_NCCL
  return true;
#else
  return false;
#endif
}

namespace detail {

c10::intrusive_ptr<c10d::ProcessGroup> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                                       int64_t world_size, const DistributedOptions& options) {
#ifdef USE_C10D_NCCL
  auto nccl = c10d::ProcessGroupNCCL::Options::create();
  nccl->timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds() * 1000.0));
  const auto backend =
      c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(rank), static_cast<int>(world_size), nccl);
  return process_group_over<c10d::ProcessGroup>(backend, store, static_cast<int>(rank), static_cast<int>(world_size),
                                                "nccl", c10::DeviceType::CUDA, nccl->timeout);
#else
  (void)store, (void)rank, (void)world_size, (void)options;
  TORCH_CHECK(false, "distributed.backend 'nccl': this LibTorch is built without NCCL; use 'gloo'");
#endif
}

}  // namespace detail
}  // namespace contaccum
