#include "contaccum/core/compute_threads.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <dlfcn.h>

namespace contaccum {
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
  torch::set_num_threads(threads);
  if (auto set = openblas_function<void (*)(int)>("openblas_set_num_threads")) set(threads);
}

int blas_threads() {
  auto get = openblas_function<int (*)()>("openblas_get_num_threads");
  return get ? get() : -1;
}

}  // namespace contaccum
