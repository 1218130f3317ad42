#include "contaccum/distributed/launcher.h"

#include "contaccum/core/compute_threads.h"

#include "contaccum/core/torch_compat.h"

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>

extern char** environ;

namespace contaccum {
namespace {

volatile std::sig_atomic_t g_forward_signal = 0;

void remember_signal(int signal) { g_forward_signal = signal; }

// The worker's environment: the launcher's, less the variables it sets.
std::vector<std::string> worker_environment(int64_t rank, int64_t world, const std::string& addr, int port) {
  const std::map<std::string, std::string> ours = {{"RANK", std::to_string(rank)},
                                                   {"LOCAL_RANK", std::to_string(rank)},
                                                   {"WORLD_SIZE", std::to_string(world)},
                                                   {"LOCAL_WORLD_SIZE", std::to_string(world)},
                                                   {"MASTER_ADDR", addr},
                                                   {"MASTER_PORT", std::to_string(port)},
                                                   {"GROUP_RANK", "0"},
                                                   {"TORCHELASTIC_USE_AGENT_STORE", "True"}};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    if (ours.count(entry.substr(0, entry.find('='))) == 0) env.push_back(entry);
  }
  for (const auto& [k, v] : ours) env.push_back(k + "=" + v);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// The started workers. Whatever ends the launch (a failure, an exception, a
// signal), none outlives it: the destructor kills and reaps any left.
class Workers {
 public:
  Workers() = default;
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  ~Workers() {
    signal_all(SIGKILL);
    for (const auto& [pid, rank] : rank_of_) {
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  void start(std::vector<std::string> argv, std::vector<std::string> env, int64_t rank) {
    auto args = pointers(argv);
    auto envp = pointers(env);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    TORCH_CHECK(pid >= 0, "cannot start worker ", rank, ": fork failed: ", std::strerror(errno));
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(125);
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    rank_of_[pid] = rank;
  }

  bool empty() const { return rank_of_.empty(); }

  void signal_all(int signal) const {
    for (const auto& [pid, rank] : rank_of_) kill(pid, signal);
  }

  // Waits for one worker; false when interrupted by a signal.
  bool reap(pid_t& pid, int64_t& rank, int& status, bool block) {
    pid = waitpid(-1, &status, block ? 0 : WNOHANG);
    if (pid <= 0) return false;
    const auto it = rank_of_.find(pid);
    if (it == rank_of_.end()) return false;
    rank = it->second;
    rank_of_.erase(it);
    return true;
  }

  size_t size() const { return rank_of_.size(); }

 private:
  std::map<pid_t, int64_t> rank_of_;
};

void stop_remaining(Workers& workers, double grace_seconds) {
  workers.signal_all(SIGTERM);
  // A stopped (hung, traced) worker takes the SIGTERM once continued.
  workers.signal_all(SIGCONT);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_seconds);
  pid_t pid;
  int64_t rank;
  int status;
  while (!workers.empty() && std::chrono::steady_clock::now() < deadline) {
    if (!workers.reap(pid, rank, status, false)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!workers.empty()) {
    spdlog::warn("launcher: {} worker(s) still running {} s after SIGTERM: killing them", workers.size(),
                 grace_seconds);
    workers.signal_all(SIGKILL);
  }
  while (!workers.empty()) workers.reap(pid, rank, status, true);
}

}  // namespace

LaunchResult launch_local_workers(const std::vector<std::string>& argv, const LaunchOptions& options) {
  TORCH_CHECK(options.nproc_per_node() >= 1, "--nproc-per-node must be >= 1, got ", options.nproc_per_node());
  // Before anything starts: 500 workers on 2 cores is a typo.
  TORCH_CHECK(options.nproc_per_node() <= max_parallelism(), "--nproc-per-node must be at most ", max_parallelism(),
              " (4 x the ", available_cores(), " cores this process may use), got ", options.nproc_per_node());
  TORCH_CHECK(options.grace_seconds() >= 0, "LaunchOptions::grace_seconds must be >= 0, got ", options.grace_seconds());
  TORCH_CHECK(!argv.empty(), "launch_local_workers: argv is empty");
  const int64_t world = options.nproc_per_node();
  // The rendezvous store lives as long as the launcher, on a free port.
  c10d::TCPStoreOptions store_options;
  store_options.port = 0;
  store_options.isServer = true;
  store_options.waitWorkers = false;
  detail::use_classic_tcp_store(store_options);
  c10d::TCPStore store(options.master_addr(), store_options);
  const int port = store.getPort();

  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{}, old_usr1{};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  sigaction(SIGUSR1, &action, &old_usr1);
  g_forward_signal = 0;

  // The previous handlers come back whatever ends the launch.
  struct RestoreHandlers {
    struct sigaction interrupt, terminate, user1;
    ~RestoreHandlers() {
      sigaction(SIGINT, &interrupt, nullptr);
      sigaction(SIGTERM, &terminate, nullptr);
      sigaction(SIGUSR1, &user1, nullptr);
    }
  } restore{old_int, old_term, old_usr1};

  Workers workers;
  LaunchResult result;
  // A signal while starting them stops the start: the ones started get it.
  for (int64_t r = 0; r < world && g_forward_signal == 0; ++r) {
    workers.start(argv, worker_environment(r, world, options.master_addr(), port), r);
  }
  // Polled, not a blocking wait: a signal that lands between a check and a
  // blocking waitpid would go unforwarded until some worker exits.
  auto forward_signal = [&] {
    const int signal = g_forward_signal;
    if (signal == 0) return;
    g_forward_signal = 0;
    spdlog::warn("launcher: got signal {}: stopping the workers", signal);
    workers.signal_all(signal);
    if (result.exit_status == 0) result = {128 + signal, -1, "the launcher was interrupted"};
  };
  forward_signal();
  while (!workers.empty()) {
    pid_t pid;
    int64_t rank;
    int status;
    if (!workers.reap(pid, rank, status, false)) {
      forward_signal();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    if (result.failed_rank < 0 && result.exit_status == 0) {
      result = {1, rank, describe(status)};
      spdlog::error("launcher: rank {} (pid {}) {}; stopping the other {} worker(s)", rank, pid, result.failure,
                    workers.size());
      stop_remaining(workers, options.grace_seconds());
    }
  }
  return result;
}

}  // namespace contaccum
