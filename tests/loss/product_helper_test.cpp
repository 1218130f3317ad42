// The thread that shares the short products with their caller
// (src/loss/product_helper.cpp): when the scheduler leaves it on the
// caller's own core, the caller moves it to another, and it then takes
// part in the products.

#include "contaccum/loss/short_products.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "contaccum/core/compute_threads.h"

#ifdef __linux__
#include <sched.h>
#endif

namespace contaccum {
namespace {

#ifdef __linux__
// One short product that is shared out in several pieces (a 32 x 4,096 x
// 256 score block).
void one_product(const torch::Tensor& x, const torch::Tensor& bank, const torch::Tensor& out) {
  ASSERT_TRUE(row_dots_short(out, x, bank));
  row_dots_out(out, x, bank);
}

cpu_set_t only(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return set;
}

// Makes products until `done()` or `seconds` have passed; whether done.
template <typename Done>
bool products_until(Done done, double seconds, const torch::Tensor& x, const torch::Tensor& bank,
                    const torch::Tensor& out) {
  const auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) return false;
    one_product(x, bank, out);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

TEST(ProductHelper, LeavesTheCallersCoreAndThenTakesPartInTheProducts) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  if (CPU_COUNT(&allowed) < 2 || max_parallelism() < 2 || blas_threads() < 0)
    GTEST_SKIP() << "needs two cores and OpenBLAS (the products' thread count follows OpenBLAS's)";
  const int blas = blas_threads();
  set_compute_threads(2);
  // The helper starts here, free to use every core this thread may.
  while (short_product_helper_stats().thread_id == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int first = 0;
  while (!CPU_ISSET(first, &allowed)) ++first;
  // The caller on one core, in a thread of its own so that the test's
  // thread keeps its affinity; the helper forced onto the same core.
  bool moved = false, took_part = false, helper_off_the_core = false;
  std::thread caller([&] {
    cpu_set_t mine = only(first);
    if (sched_setaffinity(0, sizeof(mine), &mine) != 0) return;
    const auto x = torch::randn({32, 256}), bank = torch::randn({4096, 256});
    const auto out = torch::empty({32, 4096});
    const auto before = short_product_helper_stats();
    const auto helper = static_cast<pid_t>(before.thread_id);
    if (helper <= 0 || sched_setaffinity(helper, sizeof(mine), &mine) != 0) return;
    moved = products_until([&] { return short_product_helper_stats().moves > before.moves; }, 20.0, x, bank, out);
    cpu_set_t now;
    helper_off_the_core = sched_getaffinity(helper, sizeof(now), &now) == 0 && !CPU_ISSET(first, &now);
    const auto after_move = short_product_helper_stats();
    took_part = products_until([&] { return short_product_helper_stats().helper_pieces > after_move.helper_pieces; },
                               20.0, x, bank, out);
    sched_setaffinity(helper, sizeof(allowed), &allowed);
  });
  caller.join();
  set_compute_threads(blas);
  EXPECT_TRUE(moved) << "the helper stayed on the caller's core";
  EXPECT_TRUE(helper_off_the_core) << "the helper may still run on the caller's core";
  EXPECT_TRUE(took_part) << "the helper, moved, computed no piece of a product";
}
#else
TEST(ProductHelper, LeavesTheCallersCoreAndThenTakesPartInTheProducts) {
  GTEST_SKIP() << "thread affinity is Linux-only here";
}
#endif

}  // namespace
}  // namespace contaccum
