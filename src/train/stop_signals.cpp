#include "contaccum/train/stop_signals.h"

#include <csignal>
#include <cstdint>
#include <ctime>

namespace contaccum {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
// When the first stop signal came (CLOCK_MONOTONIC, nanoseconds).
volatile int64_t g_first_signal_ns = 0;

// A repeat this soon after the first is the same request delivered twice,
// not a second request: Ctrl-C reaches every process of the terminal's
// process group (the launcher and its workers) and the launcher then forwards
// it; a scheduler (SLURM, Kubernetes) signals every process of the job, the
// launcher included, which forwards it again.
constexpr int64_t kSameRequestNs = 1'000'000'000;

int64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe (POSIX)
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// Async-signal-safe: stores, clock_gettime, or signal() and raise().
void on_stop_signal(int signal) {
  if (g_stop_signal != 0) {
    if (monotonic_ns() - g_first_signal_ns < kSameRequestNs) return;
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    return;
  }
  g_first_signal_ns = monotonic_ns();
  g_stop_signal = signal;
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  for (const int signal : {SIGTERM, SIGINT, SIGUSR1}) sigaction(signal, &action, nullptr);
}

int stop_signal() { return g_stop_signal; }

void clear_stop_signal() { g_stop_signal = 0; }

}  // namespace contaccum
