#include "contaccum/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace contaccum {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string duration_text(double seconds) {
  char buffer[32];
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buffer;
}

}  // namespace

ProgressReporter::ProgressReporter(std::string label, int64_t total, std::string unit, bool quiet, double every_seconds)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      quiet_(quiet),
      terminal_(::isatty(STDERR_FILENO) != 0),
      every_(every_seconds),
      start_(now_seconds()),
      last_print_(start_) {}

ProgressReporter::~ProgressReporter() { finish(); }

void ProgressReporter::advance(int64_t units) {
  done_ += units;
  if (quiet_) return;
  const double t = now_seconds();
  // A bar is cheap to redraw but not free: at most 10 times a second.
  if (t - last_print_ >= (terminal_ ? 0.1 : every_)) {
    last_print_ = t;
    print(false);
  }
}

void ProgressReporter::finish() {
  if (finished_) return;
  finished_ = true;
  if (!quiet_) print(true);
}

void ProgressReporter::print(bool final_line) {
  const double elapsed = now_seconds() - start_;
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line = label_ + ": " + std::to_string(done_);
  if (total_ > 0) {
    line += "/" + std::to_string(total_) + " " + unit_;
    char pct[16];
    std::snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * static_cast<double>(done_) / static_cast<double>(total_));
    line += pct;
  } else {
    line += " " + unit_;
  }
  char speed[48];
  std::snprintf(speed, sizeof speed, ", %.0f/s", rate);
  line += speed;
  if (final_line) {
    line += ", " + duration_text(elapsed);
  } else if (total_ > 0 && rate > 0) {
    line += ", ETA " + duration_text(static_cast<double>(total_ - done_) / rate);
  }
  if (terminal_) {
    std::string bar;
    if (total_ > 0) {
      const int width = 24;
      const int filled = static_cast<int>(width * static_cast<double>(done_) / static_cast<double>(total_));
      bar = "[" + std::string(static_cast<size_t>(std::min(filled, width)), '#') +
            std::string(static_cast<size_t>(width - std::min(filled, width)), '.') + "] ";
    }
    std::fprintf(stderr, "\r%s%s\033[K%s", bar.c_str(), line.c_str(), final_line ? "\n" : "");
  } else {
    const std::time_t wall = std::time(nullptr);
    char stamp[16];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&wall));
    std::fprintf(stderr, "[%s] %s\n", stamp, line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace contaccum
