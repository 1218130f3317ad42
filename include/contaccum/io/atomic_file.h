#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace contaccum {

/// A file that appears under its final name only once complete. It is written
/// to a temporary sibling (`NAME.tmp-PID-HEX`: the same directory, so the
/// rename is atomic), flushed to disk by `commit()` and renamed over `path`;
/// the directory entry is flushed too. A crash leaves the old file or the
/// new one, never a torn one (`remove_stale_temporaries` clears what a killed
/// writer left). Destroyed without `commit()` (an exception), it removes the
/// temporary. Every error names `path`, the temporary and the system's reason.
///
/// ```
/// AtomicFile file(path);
/// file.write(header);
/// file.write(payload.data(), payload.size());
/// file.commit();
/// ```
class AtomicFile {
 public:
  /// Creates the temporary; the parent directory must exist.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  /// Flushes the temporary, renames it over `path`, flushes the directory.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return temporary_; }

 private:
  std::string path_, temporary_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Writes `bytes` to `path` atomically (an `AtomicFile`), creating missing
/// parent directories.
void write_file_atomically(const std::string& path, std::string_view bytes);

/// For writers that create a file by name themselves (LibTorch's archive
/// writer): `write(temporary)` fills a temporary sibling of `path`, which is
/// then flushed and renamed over `path`; on an exception it is removed and
/// the error rethrown naming `path`. Creates missing parent directories.
void write_atomically_with(const std::string& path, const std::function<void(const std::string& temporary)>& write);

/// A directory that appears under its final name only once complete: filled
/// under a hidden temporary sibling (`.NAME.tmp-PID-HEX`), then swapped in by
/// `commit()` (an existing directory of that name is replaced: renamed aside,
/// the new one renamed in, the old one removed; put back if the second rename
/// fails). Destroyed without `commit()`, it removes the temporary tree.
class AtomicDirectory {
 public:
  /// Creates the temporary directory (and missing parents of `path`); `path`
  /// must not be an existing non-directory.
  explicit AtomicDirectory(std::string path);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  /// Where to write the contents.
  const std::string& temporary_path() const { return temporary_; }
  void commit();

 private:
  std::string path_, temporary_;
  bool committed_ = false;
};

/// A fresh temporary name beside `path` with `path`'s name and `.tmp-PID-HEX`
/// appended (a leading dot first when `hidden`): unique per process and call.
std::string temporary_name_beside(const std::string& path, bool hidden = false);

}  // namespace contaccum
