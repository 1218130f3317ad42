#pragma once

#include "contaccum/io/atomic_file.h"

#include <torch/nn/module.h>
#include <torch/serialize/archive.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// Writes `archive` to `path` atomically (`write_atomically_through`): a
/// crash leaves either the old file or the new one, never a torn one, and a
/// full disk or an I/O error is a `c10::Error` naming the path and the
/// system's reason, with the temporary removed. Throws naming the path.
void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path);

/// `module.load(archive)`, checked: every parameter and buffer must be in
/// the archive with the shape and dtype the module has, and finite. (LibTorch
/// replaces a tensor of another shape silently, so an edited config or a
/// vocabulary cut short would load into a model of the wrong size.) Throws
/// naming `what` (the file) and the tensor.
void load_module_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& what);

/// The checkpoints of a run: `directory/step-<000000123>.pt`, the newest
/// `keep_last` kept.
///
/// ```
/// CheckpointManager checkpoints(output_dir + "/checkpoints", 2);
/// checkpoints.save(step, [&](auto& archive) { trainer.save(archive); });
/// if (auto path = checkpoints.latest()) trainer.load_checkpoint(*path);
/// ```
class CheckpointManager {
 public:
  /// `keep_last` >= 1. The directory is created on the first save.
  CheckpointManager(std::string directory, int64_t keep_last = 2);
  /// Builds the archive with `write`, saves it atomically as the checkpoint of
  /// `step`, then deletes all but the newest `keep_last` checkpoints. Returns
  /// the path.
  std::string save(int64_t step, const std::function<void(torch::serialize::OutputArchive&)>& write);
  /// Checkpoint paths, oldest first (files of other names are ignored, and so
  /// are leftover temporary files of an interrupted save).
  std::vector<std::string> list() const;
  /// The newest checkpoint, if any.
  std::optional<std::string> latest() const;
  /// Path of the checkpoint of `step`.
  std::string path_of(int64_t step) const;
  const std::string& directory() const { return directory_; }

 private:
  std::string directory_;
  int64_t keep_last_;
};

}  // namespace contaccum
