#include "test_util.h"

#include <contaccum/core/stopwatch.h>

#include <thread>

namespace contaccum {
namespace {

// A lap covers the sleep before it and restarts the watch: without the
// restart, the reading after it would include the 200 ms sleep.
TEST(Stopwatch, LapMeasuresAndRestarts) {
  Stopwatch watch;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double first = watch.lap();
  EXPECT_GE(first, 0.2);
  EXPECT_LT(watch.seconds(), 0.2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(watch.seconds(), 0.020);
}

}  // namespace
}  // namespace contaccum
