// The library's helper thread (src/core/helper_thread.cpp): `share_out`
// runs every chunk once, on one thread or two; when the scheduler leaves the
// helper on the caller's own core, the caller moves it to another, and it
// then takes part in the work.

#include "contaccum/core/helper_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "contaccum/core/compute_threads.h"
#include "test_util.h"

#ifdef __linux__
#include <sched.h>
#endif

namespace contaccum {
namespace {

using test::ComputeThreadsGuard;

TEST(HelperThread, RunsEveryChunkOnceOnOneThreadOrTwo) {
  if (blas_threads() < 0 || max_parallelism() < 2) GTEST_SKIP() << "the helper follows OpenBLAS's thread count";
  const ComputeThreadsGuard restore;
  for (const int threads : {1, 2}) {
    set_compute_threads(threads);
    EXPECT_EQ(helper_threads(), threads);
    for (const int64_t chunks : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{7}, int64_t{64}}) {
      std::vector<std::atomic<int>> runs(static_cast<size_t>(chunks));
      std::atomic<int> other_threads{0};
      const auto caller = std::this_thread::get_id();
      const auto before = helper_thread_stats();
      share_out(chunks, [&](int64_t c) {
        runs[static_cast<size_t>(c)].fetch_add(1);
        if (std::this_thread::get_id() != caller) other_threads.fetch_add(1);
      });
      for (int64_t c = 0; c < chunks; ++c) EXPECT_EQ(runs[static_cast<size_t>(c)].load(), 1) << "chunk " << c;
      if (threads == 1 || chunks < 2) {
        EXPECT_EQ(other_threads.load(), 0) << threads << " thread(s), " << chunks << " chunks";
        EXPECT_EQ(helper_thread_stats().calls, before.calls);
      } else {
        EXPECT_EQ(helper_thread_stats().calls, before.calls + 1);
        EXPECT_EQ(helper_thread_stats().pieces, before.pieces + chunks);
      }
    }
  }
}

// A chunk that throws: the error reaches the caller (once both threads have
// stopped), and the next calls run every chunk. A
// call from inside a chunk runs all of its own chunks, on that thread.
TEST(HelperThread, RethrowsAChunksErrorAndRunsNestedCallsAlone) {
  if (blas_threads() < 0 || max_parallelism() < 2) GTEST_SKIP() << "the helper follows OpenBLAS's thread count";
  const ComputeThreadsGuard restore;
  for (const int threads : {1, 2}) {
    set_compute_threads(threads);
    EXPECT_THROW(share_out(64,
                           [&](int64_t c) {
                             if (c == 3) throw std::runtime_error("chunk 3");
                           }),
                 std::runtime_error)
        << threads << " thread(s)";
    std::vector<std::atomic<int>> inner(8 * 8);
    share_out(8, [&](int64_t outer) {
      const auto caller = std::this_thread::get_id();
      share_out(8, [&](int64_t c) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        inner[static_cast<size_t>(outer * 8 + c)].fetch_add(1);
      });
    });
    for (size_t i = 0; i < inner.size(); ++i) EXPECT_EQ(inner[i].load(), 1) << i;
  }
}

#ifdef __linux__
// One call that is shared out in several pieces, each long enough for the
// helper to join.
void one_call() {
  std::vector<double> sums(8);
  share_out(8, [&](int64_t c) {
    double s = 0;
    for (int i = 0; i < 200000; ++i) s += static_cast<double>(i % 7) * 1e-3;
    sums[static_cast<size_t>(c)] = s;
  });
  EXPECT_EQ(sums.front(), sums.back());
}

cpu_set_t only(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return set;
}

// Makes calls until `done()` or `seconds` have passed; whether done.
template <typename Done>
bool calls_until(Done done, double seconds) {
  const auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) return false;
    one_call();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

TEST(HelperThread, LeavesTheCallersCoreAndThenTakesPartInTheWork) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  if (CPU_COUNT(&allowed) < 2 || max_parallelism() < 2 || blas_threads() < 0)
    GTEST_SKIP() << "needs two cores and OpenBLAS (the helper's thread count follows OpenBLAS's)";
  const ComputeThreadsGuard restore;
  set_compute_threads(2);
  // The helper starts here, free to use every core this thread may.
  while (helper_thread_stats().thread_id == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int first = 0;
  while (!CPU_ISSET(first, &allowed)) ++first;
  // The caller on one core, in a thread of its own so that the test's
  // thread keeps its affinity; the helper forced onto the same core.
  bool moved = false, took_part = false, helper_off_the_core = false;
  std::thread caller([&] {
    cpu_set_t mine = only(first);
    if (sched_setaffinity(0, sizeof(mine), &mine) != 0) return;
    const auto before = helper_thread_stats();
    const auto helper = static_cast<pid_t>(before.thread_id);
    if (helper <= 0 || sched_setaffinity(helper, sizeof(mine), &mine) != 0) return;
    moved = calls_until([&] { return helper_thread_stats().moves > before.moves; }, 20.0);
    cpu_set_t now;
    helper_off_the_core = sched_getaffinity(helper, sizeof(now), &now) == 0 && !CPU_ISSET(first, &now);
    const auto after_move = helper_thread_stats();
    took_part = calls_until([&] { return helper_thread_stats().helper_pieces > after_move.helper_pieces; }, 20.0);
    sched_setaffinity(helper, sizeof(allowed), &allowed);
  });
  caller.join();
  EXPECT_TRUE(moved) << "the helper stayed on the caller's core";
  EXPECT_TRUE(helper_off_the_core) << "the helper may still run on the caller's core";
  EXPECT_TRUE(took_part) << "the helper, moved, computed no piece of the work";
}
#else
TEST(HelperThread, LeavesTheCallersCoreAndThenTakesPartInTheWork) {
  GTEST_SKIP() << "thread affinity is Linux-only here";
}
#endif

}  // namespace
}  // namespace contaccum
