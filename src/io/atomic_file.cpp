#include "contaccum/io/atomic_file.h"

#include <c10/util/Exception.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <random>
#include <system_error>

namespace fs = std::filesystem;

namespace contaccum {
namespace {

void ensure_parent(const std::string& path) {
  const auto parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  TORCH_CHECK(!ec, "cannot write ", path, ": cannot create directory ", parent.string(), ": ", ec.message());
}

// Persists a rename: the directory entry, not only the file's bytes.
void fsync_directory_of(const std::string& path) {
  const auto parent = fs::path(path).parent_path();
  const int fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // failure here cannot lose data already written
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::string temporary_name_beside(const std::string& path, bool hidden) {
  // Random and counted: neither another process nor another thread of this
  // one picks the same name.
  static std::atomic<uint64_t> counter{0};
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[48];
  std::snprintf(suffix, sizeof(suffix), ".tmp-%d-%08llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>((rng() + counter++) & 0xffffffffULL));
  if (!hidden) return path + suffix;
  const fs::path p(path);
  return (p.parent_path() / ("." + p.filename().string() + suffix)).string();
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), temporary_(temporary_name_beside(path_)) {
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  TORCH_CHECK(fd_ >= 0, "cannot write ", path_, ": cannot create temporary file ", temporary_,
              " (cannot open it for writing: ", std::strerror(errno), ")");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temporary_.c_str());
}

namespace detail {
namespace {
long system_write(int fd, const void* data, size_t size) { return ::write(fd, data, size); }
std::atomic<WriteFunction> write_function{&system_write};
}  // namespace

WriteFunction set_write_function(WriteFunction function) {
  return write_function.exchange(function ? function : &system_write);
}

bool write_fully(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const long n = write_function.load()(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // no progress and no reason: do not spin
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}
}  // namespace detail

void AtomicFile::write(const void* data, size_t size) {
  TORCH_CHECK(fd_ >= 0 && !committed_, "AtomicFile::write: ", path_, " is already committed");
  TORCH_CHECK(detail::write_fully(fd_, data, size), "cannot write ", path_, ": writing ", temporary_,
              " failed: ", std::strerror(errno));
}

void AtomicFile::commit() {
  TORCH_CHECK(fd_ >= 0 && !committed_, "AtomicFile::commit: ", path_, " is already committed");
  // Without the fsync a crash right after the rename could leave an empty or
  // partial file under the final name on some file systems.
  TORCH_CHECK(::fsync(fd_) == 0, "cannot write ", path_, ": cannot flush ", temporary_, ": ", std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  TORCH_CHECK(::close(fd) == 0, "cannot write ", path_, ": cannot close ", temporary_, ": ", std::strerror(errno));
  if (std::rename(temporary_.c_str(), path_.c_str()) != 0) {
    const int rename_errno = errno;  // before the cleanup can overwrite it
    TORCH_CHECK(false, "cannot write ", path_, ": rename from ", temporary_,
                " failed (cannot rename it into place): ", std::strerror(rename_errno));
  }
  committed_ = true;
  fsync_directory_of(path_);
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  ensure_parent(path);
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

void write_atomically_through(const std::string& path, const std::function<void(const ByteSink&)>& produce) {
  ensure_parent(path);
  AtomicFile file(path);
  std::exception_ptr failure;
  const ByteSink sink = [&](const void* data, size_t size) -> size_t {
    if (!failure) {
      try {
        file.write(data, size);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    return size;  // a short count would make LibTorch's writer terminate the process
  };
  try {
    produce(sink);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "cannot write ", path, ": ", e.what_without_backtrace());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "cannot write ", path, ": ", e.what());
  }
  if (failure) std::rethrow_exception(failure);  // the temporary goes with `file`
  file.commit();
}

namespace {
// Up to three of a directory's entries, for an error: "a, b, c and 4 more".
std::string some_entries(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string out;
  for (size_t i = 0; i < names.size() && i < 3; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 3) out += " and " + std::to_string(names.size() - 3) + " more";
  return out;
}
}  // namespace

void check_replaceable_directory(const std::string& path, const ReplaceableDirectory& replaceable) {
  std::error_code ec;
  if (!replaceable.recognise || !fs::is_directory(path, ec) || fs::is_empty(path, ec)) return;
  TORCH_CHECK(replaceable.recognise(path), "cannot write ", path, ": it exists and is not ", replaceable.kind,
              " (it holds ", some_entries(path), "); give a new or empty directory");
}

AtomicDirectory::AtomicDirectory(std::string path, ReplaceableDirectory replaceable) : path_(std::move(path)) {
  TORCH_CHECK(!path_.empty(), "the output directory's path must not be empty");
  fs::path out(path_);
  // "." and ".." name the directory they resolve to (renaming "." fails).
  if (out.filename() == "." || out.filename() == "..") out = fs::absolute(out).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "data/" names "data"
  path_ = out.string();
  std::error_code ec;
  TORCH_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "cannot write ", path_, ": ", path_,
              " exists and is not a directory");
  check_replaceable_directory(path_, replaceable);
  ensure_parent(path_);
  temporary_ = temporary_name_beside(path_, /*hidden=*/true);
  TORCH_CHECK(fs::create_directory(temporary_, ec) && !ec, "cannot write ", path_, ": cannot create ", temporary_, ": ",
              ec.message());
}

AtomicDirectory::~AtomicDirectory() {
  std::error_code ignored;
  if (!committed_) fs::remove_all(temporary_, ignored);
}

void AtomicDirectory::commit() {
  TORCH_CHECK(!committed_, "AtomicDirectory::commit: ", path_, " is already committed");
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    // Two renames: POSIX rename() cannot replace a non-empty directory.
    const auto old = temporary_name_beside(path_, /*hidden=*/true);
    fs::rename(path_, old, ec);
    TORCH_CHECK(!ec, "cannot write ", path_, ": cannot move the old directory aside: ", ec.message());
    fs::rename(temporary_, path_, ec);
    if (ec) {
      std::error_code ignored;
      fs::rename(old, path_, ignored);
      TORCH_CHECK(false, "cannot write ", path_, ": cannot rename ", temporary_, " into place: ", ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(temporary_, path_, ec);
    TORCH_CHECK(!ec, "cannot write ", path_, ": cannot rename ", temporary_, " into place: ", ec.message());
  }
  committed_ = true;
  fsync_directory_of(path_);
}

}  // namespace contaccum
