#pragma once

#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <vector>

namespace contaccum {

/// A snapshot of the default random generators: the CPU one and, when CUDA is
/// available, the one of every CUDA device. GradCache restores it before the
/// second pass over a micro-batch so dropout draws the same masks as in the
/// first.
class RngState {
 public:
  /// Captures the current state of every default generator.
  static RngState capture();
  /// Sets every default generator back to this snapshot.
  void restore() const;
  /// Writes the snapshot into `archive` (for checkpoints).
  void save(torch::serialize::OutputArchive& archive) const;
  /// Reads what `save` wrote. Throws when the number of CUDA generators
  /// differs from the snapshot's.
  static RngState load(torch::serialize::InputArchive& archive);
  /// Every generator's state as one 1-D byte tensor (CPU first, then each
  /// CUDA device), e.g. to gather the ranks' states into one checkpoint.
  torch::Tensor to_bytes() const;
  /// Reads what `to_bytes` wrote in a process with as many CUDA devices;
  /// throws when the size does not fit.
  static RngState from_bytes(const torch::Tensor& bytes);

 private:
  torch::Tensor cpu_;
  std::vector<torch::Tensor> cuda_;
};

}  // namespace contaccum
