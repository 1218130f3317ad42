#include "contaccum/core/compute_threads.h"

#include <gtest/gtest.h>
#include <torch/utils.h>

namespace contaccum {
namespace {

// Restores the process's threads whatever the test does (OpenBLAS starts
// with as many as LibTorch: one per core).
struct ThreadsGuard {
  int threads = torch::get_num_threads();
  ~ThreadsGuard() { set_compute_threads(threads); }
};

TEST(ComputeThreads, BoundsLibTorchAndOpenBlas) {
  ThreadsGuard guard;
  if (blas_threads() < 0) GTEST_SKIP() << "the BLAS in use is not OpenBLAS";
  // OpenBLAS starts with one thread per core, so on any machine one of
  // these differs from where it started.
  for (int threads : {1, 2}) {
    set_compute_threads(threads);
    EXPECT_EQ(torch::get_num_threads(), threads);
    EXPECT_EQ(blas_threads(), threads);
  }
}

TEST(ComputeThreads, RefusesNonPositive) {
  ThreadsGuard guard;
  EXPECT_THROW(set_compute_threads(0), c10::Error);
  EXPECT_THROW(set_compute_threads(-2), c10::Error);
}

}  // namespace
}  // namespace contaccum
