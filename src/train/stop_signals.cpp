#include "contaccum/train/stop_signals.h"

#include <csignal>

namespace contaccum {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

// Async-signal-safe: a store, or signal() and raise().
void on_stop_signal(int signal) {
  if (g_stop_signal != 0) {
    std::signal(signal, SIG_DFL);
    std::raise(signal);
    return;
  }
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
