#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// Options of `launch_local_workers`.
struct LaunchOptions {
  /// Worker processes to start on this machine. Must be >= 1. Default: 1.
  TORCH_ARG(int64_t, nproc_per_node) = 1;
  /// Once one worker has failed, the others get SIGTERM, then SIGKILL after
  /// this many seconds. Must be >= 0. Default: 10.
  TORCH_ARG(double, grace_seconds) = 10.0;
  /// Address the workers rendezvous on. Default: "127.0.0.1".
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
};

/// What became of a launch: 0 when every worker exited with status 0; else
/// the rank that failed first and how.
struct LaunchResult {
  int exit_status = 0;
  int64_t failed_rank = -1;
  /// "exited with status 3", "was killed by signal 9 (Killed)", ...
  std::string failure;
};

/// Runs `argv` (`argv[0]` the executable's path) as `nproc_per_node` worker
/// processes of one data-parallel run, like `torchrun --nproc-per-node`:
/// hosts the rendezvous `TCPStore` on a free loopback port and gives worker
/// `r` the environment `RANK=r`, `LOCAL_RANK=r`, `WORLD_SIZE`,
/// `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` and
/// `TORCHELASTIC_USE_AGENT_STORE=True` (see
/// `DistributedEnvironment::from_environment`).
///
/// When a worker fails (non-zero status or a signal), the others are stopped
/// (SIGTERM, then SIGKILL after `grace_seconds`) and the result names the
/// first failed rank. SIGINT, SIGTERM and SIGUSR1 sent to the launcher are
/// passed on to the workers (a `contaccum train` worker then finishes its
/// step and the rank-0 checkpoint, see `stop_signals.h`; a second signal
/// stops it at once), stop the start of any not yet started, and make the
/// result's `exit_status` 128 + the signal once every worker has ended;
/// workers that exit with that status are not failures. Workers die with the launcher
/// (`PR_SET_PDEATHSIG`, tied to the calling thread, which this call blocks),
/// and an exception out of the launch kills and reaps those started, so none
/// is left running, whatever happens to it.
LaunchResult launch_local_workers(const std::vector<std::string>& argv, const LaunchOptions& options);

}  // namespace contaccum
