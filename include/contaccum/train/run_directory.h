#pragma once

#include <memory>
#include <string>

namespace contaccum {

/// Exclusive use of a training run's output directory: an advisory lock
/// (`flock`) on `DIR/.lock`, held while any `RunDirectoryLock` of this
/// process on that directory lives. A second process, a second `contaccum
/// train` on the same `--output` among them, is refused with the holder's
/// pid. The kernel drops the lock when the holder dies, `kill -9` included,
/// so a crashed run never blocks its own resume.
///
/// Locks of one process on one directory share one file lock (the pipeline
/// and the trainer inside it both hold one).
class RunDirectoryLock {
 public:
  /// Creates `directory` if needed and locks it; throws `c10::Error` naming
  /// the directory (and the pid that holds it) when another process has it.
  explicit RunDirectoryLock(const std::string& directory);
  const std::string& directory() const { return directory_; }

  struct Held;  // the open lock file (internal)

 private:
  std::string directory_;
  std::shared_ptr<Held> held_;
};

/// Removes the temporary files (`NAME.tmp-PID-HEX`, `NAME.tmp.PID`) that a write killed
/// before its rename left under `directory` (recursively); returns how many.
/// Call with the directory locked, so that no live write's file goes.
int64_t remove_stale_temporaries(const std::string& directory);

}  // namespace contaccum
