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

/// Receives a writer's bytes: returns how many it took (always `size`).
using ByteSink = std::function<size_t(const void* data, size_t size)>;

/// For writers that push their bytes through a callback and cannot take an
/// error from it: LibTorch's archive writer, given a callback that reports a
/// short write, throws from its destructor, which ends the process
/// (`std::terminate`). `produce(sink)` calls `sink` for each piece; the
/// pieces go to an `AtomicFile` for `path`, and the first failure to write
/// one (a full disk, an I/O error) is kept while `sink` still reports every
/// byte taken and drops the rest. Once `produce` returns, that failure is
/// thrown (naming `path`, the temporary and the system's reason) and the
/// temporary removed; without one the file is flushed and renamed over
/// `path`. An exception from `produce` itself is rethrown naming `path`.
/// Creates missing parent directories.
void write_atomically_through(const std::string& path, const std::function<void(const ByteSink& sink)>& produce);

namespace detail {
/// What every `AtomicFile` and the training metrics log write through:
/// `::write`, unless a test put a fault injector in its place (short
/// writes, ENOSPC, EIO). Returns the previous function.
using WriteFunction = long (*)(int fd, const void* data, size_t size);
WriteFunction set_write_function(WriteFunction function);
/// Writes all of `size` bytes through the current write function, retrying
/// short writes and EINTR; returns false with `errno` set on a failure.
bool write_fully(int fd, const void* data, size_t size);
}  // namespace detail

/// A directory that appears under its final name only once complete: filled
/// under a hidden temporary sibling (`.NAME.tmp-PID-HEX`), then swapped in by
/// `commit()` (an existing directory of that name is replaced: renamed aside,
/// the new one renamed in, the old one removed; put back if the second rename
/// fails). Destroyed without `commit()`, it removes the temporary tree.
/// What an existing directory may be replaced by an `AtomicDirectory` as:
/// `recognise` says whether a directory is an earlier output of this kind
/// (say, its info.json's format), `kind` names the kind in the error. An
/// empty directory may always be replaced.
struct ReplaceableDirectory {
  /// "an embeddings directory".
  std::string kind;
  std::function<bool(const std::string& directory)> recognise;
};

/// Throws, naming `path` and a few of its entries, when it is an existing
/// non-empty directory that `replaceable.recognise` does not recognise (the
/// check `AtomicDirectory` makes; for callers that write through another
/// writer and must refuse before starting).
void check_replaceable_directory(const std::string& path, const ReplaceableDirectory& replaceable);

class AtomicDirectory {
 public:
  /// Creates the temporary directory (and missing parents of `path`); `path`
  /// must not be an existing non-directory. With `replaceable.recognise`
  /// set, an existing non-empty directory that it does not recognise is
  /// refused before anything is written, naming a few of its entries: an
  /// output replaced whole must never take someone's other files with it (a
  /// mistyped `--output` naming the working directory, the model or the
  /// input). Without it, any existing directory is replaced.
  explicit AtomicDirectory(std::string path, ReplaceableDirectory replaceable = {});
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
