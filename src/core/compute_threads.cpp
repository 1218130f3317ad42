#include "contaccum/core/compute_threads.h"

#include <sched.h>

#include <algorithm>
#include <thread>

#include <torch/types.h>
#include <torch/utils.h>

#include <dlfcn.h>

namespace contaccum {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

int max_parallelism() { return std::min(1024, 4 * available_cores()); }
namespace {

// Looked up at run time: the BLAS behind LibTorch is chosen by the system
// (Debian's alternatives), and may be the reference BLAS without these.
template <typename Fn>
Fn openblas_function(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

void set_compute_threads(int threads) {
  TORCH_CHECK(threads > 0, "set_compute_threads: threads must be > 0, got ", threads);
  TORCH_CHECK(threads <= max_parallelism(), "threads must be at most ", max_parallelism(), " (4 x the ",
              available_cores(), " cores this process may use), got ", threads);
  torch::set_num_threads(threads);
  if (auto set = openblas_function<void (*)(int)>("openblas_set_num_threads")) set(threads);
}

int blas_threads() {
  // Looked up once: every share_out asks (helper_threads), and dlsym walks
  // the symbol tables of every loaded library, LibTorch's included. OpenBLAS
  // comes in with LibTorch at start-up, so the first answer stays true.
  static const auto get = openblas_function<int (*)()>("openblas_get_num_threads");
  return get ? get() : -1;
}

}  // namespace contaccum
