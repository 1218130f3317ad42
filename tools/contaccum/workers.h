#pragma once
// Data-parallel commands (`train`, `encode`): `--nproc-per-node W` starts W
// workers running the same command line, and each worker joins the others.

#include <contaccum/contaccum.h>

#include <memory>
#include <string>

namespace contaccum::cli {

/// Starts `nproc` workers running this process's command line without
/// `--nproc-per-node` (`launch_local_workers`); returns the exit status, the
/// first failure named on stderr under `command`.
int launch_workers(const std::string& command, int64_t nproc);

/// In a worker (`env` from the launcher's variables): quiets the log of
/// ranks other than 0, gives this worker its share of `threads` (0: LibTorch's
/// default) as LibTorch's thread count and returns the joined process group.
std::shared_ptr<Collective> join_workers(const DistributedEnvironment& env, const DistributedOptions& options,
                                         int64_t threads);

}  // namespace contaccum::cli
