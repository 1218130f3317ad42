#pragma once

#include <chrono>

namespace contaccum {

/// Wall-clock seconds on the steady clock, for the time splits the trainer,
/// the engine and the tools report.
///
/// ```
/// Stopwatch watch;
/// encode();
/// double encode_seconds = watch.lap();  // and restarts
/// ```
class Stopwatch {
 public:
  using Clock = std::chrono::steady_clock;
  Stopwatch() : start_(Clock::now()) {}
  /// Seconds since construction or the last `restart` / `lap`.
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  /// `seconds()`, then restarts.
  double lap() {
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - start_).count();
    start_ = now;
    return s;
  }
  void restart() { start_ = Clock::now(); }

 private:
  Clock::time_point start_;
};

}  // namespace contaccum
