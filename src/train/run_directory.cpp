#include "contaccum/train/run_directory.h"

#include <c10/util/Exception.h>
#include <sys/file.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>

namespace fs = std::filesystem;

namespace contaccum {

struct RunDirectoryLock::Held {
  int fd = -1;
  ~Held() {
    if (fd >= 0) ::close(fd);  // releases the flock
  }
};

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::weak_ptr<RunDirectoryLock::Held>>& registry() {
  static std::map<std::string, std::weak_ptr<RunDirectoryLock::Held>> r;
  return r;
}
}  // namespace

RunDirectoryLock::RunDirectoryLock(const std::string& directory) : directory_(directory) {
  std::error_code ec;
  fs::create_directories(directory, ec);
  TORCH_CHECK(!ec, "cannot create directory ", directory, ": ", ec.message());
  const auto key = fs::canonical(directory, ec).string();
  TORCH_CHECK(!ec, "cannot resolve directory ", directory, ": ", ec.message());
  std::lock_guard<std::mutex> guard(registry_mutex());
  if (auto existing = registry()[key].lock()) {
    held_ = std::move(existing);
    return;
  }
  const auto path = (fs::path(key) / ".lock").string();
  auto held = std::make_shared<Held>();
  held->fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  TORCH_CHECK(held->fd >= 0, "cannot open ", path, ": ", std::strerror(errno));
  if (::flock(held->fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string pid;
    std::ifstream(path) >> pid;
    TORCH_CHECK(err != EWOULDBLOCK, "output directory ", directory, " is in use by another training run (pid ",
                pid.empty() ? "unknown" : pid, ", holding ", path,
                "); wait for it to finish, stop it, or choose another output directory");
    TORCH_CHECK(false, "cannot lock ", path, ": ", std::strerror(err));
  }
  // The holder's pid, for the message a second writer gets.
  const auto text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(held->fd, 0) == 0) {
    [[maybe_unused]] const auto written = ::pwrite(held->fd, text.data(), text.size(), 0);
  }
  registry()[key] = held;
  held_ = std::move(held);
}

int64_t remove_stale_temporaries(const std::string& directory) {
  // The names of every atomic writer here: NAME.tmp-PID-HEX, NAME.tmp.PID[.N].
  static const std::regex temporary(".+\\.tmp[-.][0-9]+([-.][0-9a-f]+)?");
  int64_t removed = 0;
  std::error_code ec;
  if (!fs::is_directory(directory, ec)) return 0;
  for (auto it = fs::recursive_directory_iterator(directory, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec) && std::regex_match(it->path().filename().string(), temporary)) {
      std::error_code rm;
      if (fs::remove(it->path(), rm)) ++removed;
    }
  }
  return removed;
}

}  // namespace contaccum
