#include "workers.h"

#include "command.h"

#include <contaccum/core/compute_threads.h>

#include <spdlog/spdlog.h>

#include <cstring>
#include <iostream>

namespace contaccum::cli {

int launch_workers(const std::string& command, int64_t nproc) {
  std::vector<std::string> argv = {"/proc/self/exe"};
  const auto& original = command_line();
  for (size_t i = 1; i < original.size(); ++i) {
    const auto& a = original[i];
    if (a == "--nproc-per-node") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc-per-node=", 0) == 0) continue;
    argv.push_back(a);
  }
  const auto result = launch_local_workers(argv, LaunchOptions().nproc_per_node(nproc));
  if (result.exit_status == 0) return 0;
  if (result.failed_rank < 0 && result.exit_status > 128) {
    std::cerr << "contaccum " << command << ": the launcher passed signal " << result.exit_status - 128 << " ("
              << strsignal(result.exit_status - 128) << ") on to every worker; they have ended\n";
    return result.exit_status;
  }
  std::cerr << "contaccum " << command << ": "
            << (result.failed_rank >= 0 ? "rank " + std::to_string(result.failed_rank) + " " + result.failure
                                        : result.failure)
            << "; the other workers were stopped\n";
  return result.exit_status;
}

std::shared_ptr<Collective> join_workers(const DistributedEnvironment& env, const DistributedOptions& options,
                                         int64_t threads) {
  if (env.rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 tells the story
  const int64_t all = threads > 0 ? threads : torch::get_num_threads();
  set_compute_threads(static_cast<int>(std::max<int64_t>(1, all / env.local_world_size)));
  return init_process_group(env, options);
}

}  // namespace contaccum::cli
