#pragma once
// Processes a test starts, and what /proc says of processes, for tests that
// run the CLI: race-free (a process may exit while it is being read) and
// leaving nothing behind whatever ends the test.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace contaccum::test {

/// The exit status of a wait status: the code, or 128 + the signal.
inline int exit_status_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

/// Child processes, each started in a process group of its own, that the
/// owner kills (the whole group: a launcher and its workers) and reaps when it
/// is destroyed: a fixture's member, so that a failed assertion or an
/// exception mid-test leaves no process running. Each also dies with this
/// process (PR_SET_PDEATHSIG), for a test binary ended by a signal. Declare it after the
/// temporary directories the processes write in, so that they stop first.
class ChildProcesses {
 public:
  ChildProcesses() = default;
  ChildProcesses(const ChildProcesses&) = delete;
  ChildProcesses& operator=(const ChildProcesses&) = delete;
  ~ChildProcesses() {
    for (const auto& [pid, log] : logs_) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);  // should its group not be set up yet
    }
    for (const auto& [pid, log] : logs_) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  /// Starts `args` (`args[0]` the executable's path) with `env` added to
  /// this process's environment; stdout to /dev/null, stderr appended to
  /// `log` (or /dev/null when empty). Returns its pid (0 when it could not
  /// start, after a failed expectation).
  pid_t spawn(std::vector<std::string> args, const std::vector<std::string>& env = {}, const std::string& log = "") {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings(env);
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string err = log.empty() ? "/dev/null" : log;
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec. Its own group
      // (killed as one), and killed with this process, whatever signal ends
      // it: a test binary stopped by SIGTERM or SIGKILL runs no destructor.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(125);
      const int out_fd = ::open("/dev/null", O_WRONLY);
      const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (out_fd < 0 || err_fd < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(126);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    if (pid > 0) ::setpgid(pid, pid);  // as the child does: whichever runs first
    EXPECT_GT(pid, 0) << "cannot start " << argv[0] << ": " << std::strerror(errno);
    if (pid <= 0) return 0;
    logs_[pid] = log;
    return pid;
  }

  /// Waits for `pid` to end and returns its exit status (see
  /// `exit_status_of`); -1 for a pid not started here.
  int wait(pid_t pid) {
    if (logs_.erase(pid) == 0) return -1;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) return -1;
    }
    return exit_status_of(status);
  }

  /// The exit status of `pid` if it has ended, else -1 (it keeps running).
  int poll(pid_t pid) {
    int status = 0;
    if (logs_.count(pid) == 0 || ::waitpid(pid, &status, WNOHANG) != pid) return -1;
    logs_.erase(pid);
    return exit_status_of(status);
  }

  /// Sends `signal` to `pid` alone (not its group) and waits for it.
  int kill_and_wait(pid_t pid, int signal) {
    ::kill(pid, signal);
    return wait(pid);
  }

 private:
  std::map<pid_t, std::string> logs_;
};

/// A file under /proc, or "" when it cannot be read: its process may end
/// between listing and reading (ESRCH), which is not an error.
inline std::string read_proc_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

/// The processes for which `keep(its /proc directory)` holds, among those
/// alive while /proc was listed.
template <typename Keep>
std::vector<pid_t> processes_where(Keep&& keep) {
  std::vector<pid_t> out;
  std::error_code error;
  for (std::filesystem::directory_iterator it("/proc", error), end; !error && it != end; it.increment(error)) {
    const auto name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (keep(it->path())) out.push_back(std::stoi(name));
  }
  return out;
}

/// Processes whose command line mentions `needle` (a run's directory, say).
/// Zombies have an empty command line: they are not running.
inline std::vector<pid_t> processes_mentioning(const std::string& needle) {
  return processes_where([&](const std::filesystem::path& dir) {
    return read_proc_file(dir / "cmdline").find(needle) != std::string::npos;
  });
}

/// The children of `parent` (a launcher's workers).
inline std::vector<pid_t> children_of(pid_t parent) {
  return processes_where([&](const std::filesystem::path& dir) {
    const auto stat = read_proc_file(dir / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) return false;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    return ppid == parent && state != 'Z';
  });
}

/// Waits up to `seconds` for no process to mention `needle`; true if none does.
inline bool none_mention_within(const std::string& needle, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!processes_mentioning(needle).empty()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace contaccum::test
