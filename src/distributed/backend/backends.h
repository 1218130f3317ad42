#pragma once
// Internal: the c10d process group of each backend, one file each (gloo.cpp;
// nccl.cpp, which builds only where LibTorch has NCCL and says so elsewhere).

#include "contaccum/distributed/process_group.h"

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace contaccum::detail {

c10::intrusive_ptr<c10d::ProcessGroup> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                                       int64_t world_size, const DistributedOptions& options);
c10::intrusive_ptr<c10d::ProcessGroup> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                                       int64_t world_size, const DistributedOptions& options);

}  // namespace contaccum::detail
