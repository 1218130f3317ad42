// What the collectives of a data-parallel step cost alone: W processes on
// this machine (started by this program through `launch_local_workers`), one
// thread each, doing nothing but the collectives, every rank entering each
// one at the same moment (a barrier first), so that no rank waits for a
// slower one. Prints one JSON line per collective from rank 0: the median
// wall time and the process CPU time (every thread: the caller, Gloo's
// worker and device threads) per call.
//
//   contaccum_bench_collectives [--ranks 2] [--rounds 200]
//                               [--gather-bytes 24576] [--reduce-bytes 65536,4718592]
//
// The defaults are bench/distributed/run.sh's step: each micro-batch
// all-gathers 8 rows a rank of (1 query + 2 passages) x 128 floats, and the
// gradient all-reduce sends about 16,000 row flags, then about 4.6 MB.

#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "contaccum/contaccum.h"

#include "../bench_util.h"

namespace {

using contaccum::Collective;
using json = nlohmann::json;

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Times `op` `rounds` times, each after a barrier; rank 0 prints the line.
template <typename Op>
void timed(Collective& collective, const std::string& name, int64_t bytes, int64_t rounds, Op op) {
  for (int i = 0; i < 5; ++i) op();  // connections and buffers warm
  std::vector<double> wall, cpu;
  for (int64_t i = 0; i < rounds; ++i) {
    collective.barrier();
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    op();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(process_cpu_seconds() - c0);
  }
  if (collective.rank() != 0) return;
  std::cout << json{{"kind", "collective"},
                    {"op", name},
                    {"bytes", bytes},
                    {"ranks", collective.world_size()},
                    {"rounds", rounds},
                    {"median_ms", 1e3 * contaccum::bench::median(wall)},
                    {"cpu_ms", 1e3 * contaccum::bench::median(cpu)}}
                   .dump()
            << std::endl;
}

int worker(const contaccum::DistributedEnvironment& env, int64_t rounds, int64_t gather_bytes,
           const std::vector<int64_t>& reduce_bytes) {
  contaccum::set_compute_threads(1);
  auto collective = contaccum::init_process_group(env);
  const auto floats = [](int64_t bytes) { return std::max<int64_t>(1, bytes / 4); };
  const auto rows = torch::randn({floats(gather_bytes)});
  timed(*collective, "all_gather", gather_bytes, rounds, [&] { collective->all_gather(rows); });
  for (const int64_t bytes : reduce_bytes) {
    // One flat tensor: a 1-dimensional tensor travels whole (no row flags).
    std::vector<torch::Tensor> tensors{torch::randn({floats(bytes)})};
    timed(*collective, "all_reduce_sum", bytes, rounds, [&] { collective->all_reduce_sum(tensors); });
  }
  collective->barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The cost of the collectives alone, W processes on this machine"};
  int64_t ranks = 2, rounds = 200, gather_bytes = 24576;
  std::string reduce = "65536,4718592";
  app.add_option("--ranks", ranks, "worker processes")->check(CLI::Range(2, 64));
  app.add_option("--rounds", rounds, "timed calls of each collective")->check(CLI::PositiveNumber);
  app.add_option("--gather-bytes", gather_bytes, "bytes each rank contributes to the all-gather")
      ->check(CLI::PositiveNumber);
  app.add_option("--reduce-bytes", reduce, "sizes of the all-reduced tensor, comma-separated");
  CLI11_PARSE(app, argc, argv);
  try {
    // Checked before any worker starts.
    const auto reduce_bytes = contaccum::bench::parse_list(reduce, "--reduce-bytes");
    const auto env = contaccum::DistributedEnvironment::from_environment();
    if (env) return worker(*env, rounds, gather_bytes, reduce_bytes);
    // The same command line, as the workers' (this executable's own path).
    std::vector<std::string> command(argv, argv + argc);
    command[0] = std::filesystem::read_symlink("/proc/self/exe").string();
    const auto result = contaccum::launch_local_workers(command, contaccum::LaunchOptions().nproc_per_node(ranks));
    if (result.exit_status != 0)
      std::cerr << "contaccum_bench_collectives: rank " << result.failed_rank << " " << result.failure << "\n";
    return result.exit_status;
  } catch (const std::exception& e) {
    std::cerr << "contaccum_bench_collectives: " << e.what() << "\n";
    return 1;
  }
}
